"""Benchmark: the /proc/net/tcp parser against ``ss -tan``.

1. A generated, realistic 50k-line ``/proc/net/tcp`` (an application pool of ~1000
   connections to each of 40 Redis nodes, some TIME_WAIT, listeners, inbound
   connections, depwatch's own sockets): median time of ``count_by_remote``.
2. A live network namespace (``unshare --net``; needs root) in which child processes
   open loopback connections (the server ends stay in the accept queues, so only
   the clients need descriptors, spread over as many processes as RLIMIT_NOFILE
   requires) -- first 25k connections (50k sockets), then as many as the machine
   allows up to ``--max-connections`` -- and, at each size, the medians of
   ``observe()`` on ``/proc/<pid>/net/...`` (read + parse) and of ``ss -tan`` run
   in the namespace via ``nsenter``, and their ratio.

Run as root:  python bench/socket_table.py [--runs 7] [--max-connections 200000]
The namespace disappears with its processes, which are stopped on every exit path.
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.model import SocketObservation
from exporter.probes.sockets import observe
from exporter.sockets.addresses import address_hex
from exporter.sockets.tcp_table import RemoteMatcher, count_by_remote

NODES = 40
NODE_PORT = 6379


def _line(sl: int, local: tuple[str, int], remote: tuple[str, int], st: str, inode: int) -> str:
    (lip, lport), (rip, rport) = local, remote
    lhex, rhex = address_hex(lip, family=4), address_hex(rip, family=4)
    tail = "1 0000000000000000 20 4 30 10 -1" if inode else "3 0000000000000000"
    line = (
        f"{sl:4d}: {lhex}:{lport:04X} {rhex}:{rport:04X} {st} 00000000:00000000 "
        f"00:00000000 00000000  1000        0 {inode} {tail}"
    )
    return line.ljust(149)  # tcp4_seq_show pads every line to 149 characters


def generate(lines: int = 50_000, seed: int = 7) -> tuple[str, dict, frozenset[int]]:
    """(table text, wanted endpoints, own inodes) for a pod with a big Redis pool."""
    rng = random.Random(seed)
    nodes = [f"10.0.{i // 8}.{10 + i % 8}" for i in range(NODES)]
    app = "10.180.6.147"
    out = [
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode".ljust(149)
    ]
    inode = 48_000_000
    own: set[int] = set()
    for sl in range(lines):
        inode += rng.randrange(1, 50)
        kind = rng.random()
        if sl < 4:  # the app's and depwatch's listeners
            out.append(_line(sl, ("0.0.0.0", 8080 + sl), ("0.0.0.0", 0), "0A", inode))
        elif kind < 0.80:  # the application's pool
            node = nodes[sl % NODES]
            st = rng.choice(["01"] * 30 + ["06", "08", "02", "04"])
            local = (app, 32768 + sl % 28000)
            out.append(_line(sl, local, (node, NODE_PORT), st, 0 if st == "06" else inode))
        elif kind < 0.95:  # inbound requests to the application
            peer = f"10.180.{rng.randrange(256)}.{rng.randrange(256)}"
            out.append(_line(sl, (app, 8080), (peer, rng.randrange(32768, 61000)), "01", inode))
        else:  # TIME_WAIT leftovers elsewhere
            out.append(
                _line(sl, (app, rng.randrange(32768, 61000)), ("172.20.147.155", 4318), "06", 0)
            )
    for i in range(NODES):  # depwatch's own connection to each node, created together
        own.add(47_000_100 + i)
        out.append(_line(lines + i, (app, 40000 + i), (nodes[i], NODE_PORT), "01", 47_000_100 + i))
    endpoints = {(n, NODE_PORT): f"{n}:{NODE_PORT}" for n in nodes}
    return "\n".join(out) + "\n", endpoints, frozenset(own)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up (regex compile, page cache)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench_synthetic(runs: int) -> None:
    text, endpoints, own = generate()
    matcher = RemoteMatcher.build(endpoints, ["172.20.147.155"])
    n = text.count("\n") - 1
    print(f"synthetic /proc/net/tcp: {n:,} lines, {len(text) / 1e6:.1f} MB, medians of {runs}")
    with_own = median_ms(lambda: count_by_remote(text, matcher, family=4, exclude_inodes=own), runs)
    without = median_ms(lambda: count_by_remote(text, matcher, family=4), runs)
    scattered = frozenset(range(10_000, 10_000 + 40 * 1_000_003, 1_000_003))
    worst = median_ms(
        lambda: count_by_remote(text, matcher, family=4, exclude_inodes=scattered), runs
    )
    print(f"  count_by_remote, {len(own)} own inodes (one range): {with_own:8.1f} ms")
    print(f"  count_by_remote, no own inodes:              {without:8.1f} ms")
    print(f"  count_by_remote, 40 scattered own inodes:    {worst:8.1f} ms (worst case)")


_ANCHOR = textwrap.dedent(
    """
    import socket, subprocess, sys
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for knob, value in (("ipv4/ip_local_port_range", "1024 65535"), ("core/somaxconn", "65535")):
        with open(f"/proc/sys/net/{knob}", "w") as f:  # this namespace only
            f.write(value)
    listeners = []
    for _ in range(40):                 # 40 "Redis nodes"; connections are never
        s = socket.socket()             # accepted, so the server ends need no fds
        s.bind(("127.0.0.1", 0))
        s.listen(65535)
        listeners.append(s)
    print(*[s.getsockname()[1] for s in listeners], flush=True)
    sys.stdin.read()
    """
)

_HOLDER = textwrap.dedent(
    """
    import errno, resource, socket, sys
    ports, count = [int(p) for p in sys.argv[1].split(",")], int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held, why = [], "ok"
    while len(held) < count:
        c = socket.socket()
        try:
            c.connect(("127.0.0.1", ports[len(held) % len(ports)]))
        except OSError as exc:
            c.close()
            why = errno.errorcode.get(exc.errno, str(exc.errno))
            break
        held.append(c)
    print(why, len(held), flush=True)
    sys.stdin.read()
    """
)


class Namespace:
    """A network namespace kept alive by an anchor process holding 40 listeners, and
    client processes (each within its own descriptor limit) holding connections."""

    def __init__(self, unshare: str, nsenter: str) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.anchor = self._spawn([unshare, "--net", sys.executable, "-c", _ANCHOR])
        assert self.anchor.stdout is not None
        self.ports = [int(p) for p in self.anchor.stdout.readline().split()]
        self.nsenter = nsenter
        self.connections = 0

    def _spawn(self, argv: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    @property
    def root(self) -> Path:
        return Path(f"/proc/{self.anchor.pid}")

    def grow(self, target: int, per_process: int) -> str:
        """Open connections until ``target`` or the first failure; returns "ok" or errno."""
        while self.connections < target:
            want = min(per_process, target - self.connections)
            ports = ",".join(map(str, self.ports))
            holder = self._spawn(
                [self.nsenter, f"--net={self.root}/ns/net", sys.executable, "-c", _HOLDER,
                 ports, str(want)]
            )  # fmt: skip
            assert holder.stdout is not None
            why, opened = holder.stdout.readline().split()
            self.connections += int(opened)
            if why != "ok":
                return why
        return "ok"

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.stdin is not None:
                proc.stdin.close()
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


def bench_namespace(runs: int, sizes: list[int]) -> None:
    unshare, nsenter, ss = (shutil.which(x) for x in ("unshare", "nsenter", "ss"))
    if not (unshare and nsenter and ss):
        print("live namespace: skipped (needs unshare, nsenter and ss)")
        return
    per_process = resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 100
    ns = Namespace(unshare, nsenter)
    try:
        if not ns.ports:
            print("live namespace: the anchor did not start (root needed)")
            return
        root = ns.root
        nodes = {("127.0.0.1", p): f"127.0.0.1:{p}" for p in ns.ports}
        ss_cmd = [nsenter, f"--net={root}/ns/net", ss, "-tan"]

        def ours() -> SocketObservation:
            return observe(
                root,
                redis_nodes=nodes,
                collector={},
                collector_hosts=frozenset(),
                own_inodes=frozenset(),
            )

        for size in sizes:
            started = time.perf_counter()
            why = ns.grow(size, per_process)
            took = time.perf_counter() - started
            both = median_ms(ours, runs)
            read = median_ms((root / "net" / "tcp").read_bytes, runs)
            text = (root / "net" / "tcp").read_bytes().decode("latin-1")
            matcher = RemoteMatcher.build(nodes)
            parse = median_ms(partial(count_by_remote, text, matcher, family=4), runs)
            theirs = median_ms(
                lambda: subprocess.run(ss_cmd, stdout=subprocess.DEVNULL, check=True), runs
            )
            lines = (root / "net" / "tcp").read_bytes().count(b"\n") - 1
            obs = ours()
            established = sum(s["established"] for s in obs.redis_sockets.values())
            limit = "" if why == "ok" else f"; stopped by the machine: {why}"
            print(
                f"live namespace: {ns.connections:,} loopback connections "
                f"({len(ns.procs) - 1} client processes, {per_process:,} fds each at most"
                f"{limit}) = {lines:,} sockets in /proc/<pid>/net/tcp, opened in {took:.1f} s"
            )
            print(f"  observe() read+parse:   {both:8.1f} ms (median of {runs})")
            print(f"    read of net/tcp alone: {read:8.1f} ms (the kernel formatting the table)")
            print(f"    parse of net/tcp alone:{parse:8.1f} ms (count_by_remote)")
            print(f"  nsenter ss -tan:        {theirs:8.1f} ms (median of {runs})")
            print(f"  ratio of medians ss -tan / observe(): {theirs / both:.2f}")
            print(f"  ratio of medians ss -tan / parse:     {theirs / parse:.2f}")
            assert established == ns.connections, (established, ns.connections)
            if why != "ok":
                break
    finally:
        ns.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-connections", type=int, default=200_000)
    parser.add_argument("--no-live", action="store_true", help="skip the namespace part")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {sys.platform}")
    bench_synthetic(args.runs)
    if not args.no_live:
        sizes = sorted({min(25_000, args.max_connections), args.max_connections})
        bench_namespace(args.runs, sizes)


if __name__ == "__main__":
    main()
