"""Side-by-side footprint and speed: depwatch vs prometheus-redis-exporter + blackbox_exporter.

One command (``python bench/compare.py [--quick]``) brings up, on 127.0.0.1 only:

- a 3 primary + 3 replica Redis Cluster with TLS and a password, and, only during the
  30-node windows, a 15 + 15 one (same TLS material; ``tests/support/redis_servers.py``);
- an OTLP/HTTP receiver (``exporter.demo_receiver`` in a subprocess). The gRPC port
  given to depwatch is a free port with nothing listening, so the gRPC probe fails
  fast (connection refused) for depwatch and blackbox alike;
- ``depwatch serve`` (cluster mode, TLS, password, both OTLP ports, 5 s interval; a
  1 s-interval variant for CPU and cycle time), ``prometheus-redis-exporter``
  (``--is-cluster``, ``--tls-ca-cert-file``, password from REDIS_PASSWORD, one
  ``/scrape?target=rediss://node`` per node) and ``prometheus-blackbox-exporter``
  (a tcp module doing TLS + AUTH + PING + QUIT per node, an http module POSTing an
  empty OTLP ExportMetricsServiceRequest to both OTLP ports).

One *anchor cycle* covers what one depwatch cycle covers: 6 redis_exporter scrapes
(one per node) plus 8 blackbox probes (6 Redis nodes, 2 OTLP ports). Every HTTP
request carries the headers Prometheus sends (``Accept``, ``Accept-Encoding: gzip``,
``X-Prometheus-Scrape-Timeout-Seconds: 10``) on a persistent keep-alive connection.

What is measured (repeated measurements alternate between the exporters; the table
shows medians over the repeats):

- RSS (``VmRSS`` from ``/proc/<pid>/status``) after start (process ready, one full
  cycle done), over ``--repeats`` fresh starts; and after ``--duration`` seconds of
  probing (one long run of the three side by side: 300 s, ``--quick`` 60 s; a
  background driver runs an anchor cycle and one depwatch scrape every 5 s whenever
  no other measurement is running).
- CPU per full cycle: utime+stime from ``/proc/<pid>/stat``. depwatch: a 1 s-interval
  instance, left alone for half the window (probe-only CPU), then scraped once a
  second, i.e. once per cycle as Prometheus would (full-cycle CPU = CPU-seconds per
  second x the 1 s interval). Anchors: redis_exporter's + blackbox's CPU delta over
  anchor cycles paced at 1/s, divided by the number of cycles.
- ``/metrics`` latency p50/p99 over 200 keep-alive scrapes of each exporter's own
  ``/metrics`` (redis_exporter's scrapes its seed node live, as it always does).
- PING round trip: the median of depwatch's reported ``rtt_ms`` (``/status``, one
  sample per node per cycle over the long run) and the mean from
  ``redis_health_check_duration_seconds`` sum/count, against the floor: a sync
  redis-py PING loop on an open TLS connection (median of 1000). Diagnostic rows add
  an asyncio floor on one connection and with 6 concurrent PINGs, and the same sync
  PING sent once per second of idleness (a check runs once per interval, and a PING
  after an idle second pays for waking both processes and, in a VM, their vCPUs).
- Probe-cycle time (``depwatch_probe_cycle_duration_seconds`` sum/count deltas) of the
  1 s instance on the 6-node and the 30-node cluster, alternating.
- Commands each node receives per 5 s interval: ``INFO commandstats`` deltas
  (calls + rejected_calls over every ``cmdstat_*``, minus this script's own INFO, and
  without ``replconf``, the replicas' acks; replication PINGs are turned off with
  ``repl-ping-replica-period``/``repl-timeout`` 3600), while only one exporter touches
  the cluster. depwatch windows start and end right after one of its cycles, scraping
  ``/metrics`` at 1/s and at 10/s; the target counts a node's commands minus topology
  refreshes (CLUSTER *, and the AUTH + CLIENT SETNAME of the connection each refresh
  opens). Anchor windows fit between two depwatch cycles and are normalised to
  Prometheus scraping every target at 1/s and 10/s.

Afterwards depwatch is dissected: the same 1 s windows with parts of a cycle turned
off (no OTLP env; the socket table pointed at a missing ``DEPWATCH_PROC_ROOT``; both;
the same on 30 nodes), the cost of reading ``/proc/net/tcp{,6}``
against a sock_diag netlink dump, ``/proc/<pid>/smaps_rollup``, the modules ``depwatch
serve`` imports (``-X importtime``) and the RSS each package adds when they are imported
in dependency order into a bare interpreter, tracemalloc's view of those imports, what
one exposition render costs prometheus_client, the cost of parsing one INFO reply, and
bare asyncio redis-py doing depwatch's Redis work (per node INFO then PING, one node
after another; and the other order, PING first) on 6 and 30 nodes.

The table goes to stdout and, as JSON, to ``bench/results/latest.json``.
Every process started here is stopped on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import http.client
import json
import math
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
REDIS_EXPORTER = "/usr/bin/prometheus-redis-exporter"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
HOST = "127.0.0.1"
INTERVAL = 5.0  # depwatch's default interval: "per interval" means per 5 s
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROM_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.45.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class BenchError(RuntimeError):
    """Something the benchmark depends on did not come up or answered wrongly."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- stats
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (p99 of 200 samples is the 198th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# ------------------------------------------------------------------------- /proc
def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def smaps_rollup_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and int(parts[0]) > 0:
            out[key] = round(int(parts[0]) / 1024, 1)
    return out


# ------------------------------------------------------------------------- processes
class Proc:
    """A child process in its own session, output to a log file; ``stop()`` always reaps."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        logdir: Path,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        with self.log_path.open("ab") as log_file:
            self.popen = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log_file,
                stderr=log_file,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def read_line(self, timeout: float) -> str:
        """One line of stdout (``stdout_pipe=True``), or BenchError after ``timeout``."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        if not ready:
            raise BenchError(f"{self.name}: no output within {timeout}s\n{self.tail()}")
        return self.popen.stdout.readline().decode().strip()


class Http:
    """A persistent keep-alive HTTP/1.1 connection (one per caller thread)."""

    def __init__(self, port: int, timeout: float = 15.0) -> None:
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        """(status, body decompressed, seconds from request to the last body byte)."""
        for attempt in range(2):
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
                    self._conn.connect()
                started = time.perf_counter()
                self._conn.request("GET", path, headers=headers or {})
                response = self._conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - started
                if response.getheader("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, body, elapsed
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def text(self, path: str, headers: dict[str, str] | None = None) -> str:
        status, body, _ = self.get(path, headers)
        if status != 200:
            raise BenchError(f"GET :{self.port}{path} -> {status}: {body[:200]!r}")
        return body.decode()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            out.append((labels, float(match.group(3))))
    return out


def one_value(text: str, name: str) -> float:
    found = samples(text, name)
    return found[0][1] if found else math.nan


def wait_until(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    *,
    proc: Proc | None = None,
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, http.client.HTTPException, BenchError):
            if predicate():
                return
        if proc is not None and not proc.alive():
            raise BenchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        if time.monotonic() >= deadline:
            raise BenchError(f"{what} not reached within {timeout}s\n{proc.tail() if proc else ''}")
        time.sleep(interval)


# ------------------------------------------------------------------------- the rig
@dataclass
class Rig:
    """What the measurements share: the 3+3 cluster, TLS material, receiver, ports, configs.

    The 15+15 cluster runs only inside ``big_cluster()``: its ~1,700 bus connections
    would otherwise sit in every socket table depwatch reads (a pod's would not).
    """

    workdir: Path
    tls: Any
    cluster6: Any
    start_cluster30: Callable[[], Any]
    receiver_port: int
    grpc_port: int
    blackbox_config: Path
    password: str
    port_picker: Callable[[], int]

    @contextlib.contextmanager
    def big_cluster(self) -> Iterator[Any]:
        cluster = self.start_cluster30()
        try:
            yield cluster
        finally:
            cluster.stop()

    @property
    def nodes6(self) -> list[str]:
        return list(self.cluster6.addresses)

    @property
    def otlp_targets(self) -> list[str]:
        return [
            f"http://{HOST}:{self.receiver_port}/v1/metrics",
            f"http://{HOST}:{self.grpc_port}/v1/metrics",
        ]


@dataclass
class Exporter:
    kind: str  # depwatch | redis_exporter | blackbox
    proc: Proc
    port: int
    http: Http = field(init=False)

    def __post_init__(self) -> None:
        self.http = Http(self.port)

    def stop(self) -> None:
        self.http.close()
        self.proc.stop()


def depwatch_argv() -> list[str]:
    exe = shutil.which("depwatch")
    return [exe, "serve"] if exe else [sys.executable, "-m", "exporter", "serve"]


def depwatch_env(rig: Rig, cluster: Any, port: int, interval: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "OTEL_", "DEPWATCH_"))
    }
    env.update(
        REDIS_ADDRESS=cluster.addresses[0],
        REDIS_CLUSTER_MODE="true",
        REDIS_TLS_ENABLED="true",
        REDIS_TLS_CA_FILE=str(rig.tls.ca_file),
        REDIS_PASSWORD=rig.password,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{HOST}:{rig.receiver_port}",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        DEPWATCH_OTLP_HTTP_PORT=str(rig.receiver_port),
        DEPWATCH_OTLP_GRPC_PORT=str(rig.grpc_port),
        DEPWATCH_LISTEN_ADDRESS=f"{HOST}:{port}",
        DEPWATCH_PROBE_INTERVAL=interval,
        DEPWATCH_LOG_LEVEL="warning",
    )
    return env


def start_depwatch(
    rig: Rig,
    *,
    interval: str = "5s",
    cluster: Any = None,
    name: str = "depwatch",
    argv: Sequence[str] | None = None,
    env_changes: dict[str, str | None] | None = None,
) -> Exporter:
    port = rig.port_picker()
    env = depwatch_env(rig, cluster or rig.cluster6, port, interval)
    for key, value in (env_changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return start_exporter(rig, "depwatch", argv or depwatch_argv(), env, port,
                          ready_path="/readyz", name=name, timeout=60)  # fmt: skip


def start_exporter(
    rig: Rig, kind: str, argv: Sequence[str], env: dict[str, str], port: int, *,
    ready_path: str, name: str | None = None, timeout: float = 30,
) -> Exporter:  # fmt: skip
    """Start one exporter and wait until ``ready_path`` answers 200 (stopped on failure)."""
    name = name or kind
    exporter = Exporter(kind, Proc(name, argv, env=env, logdir=rig.workdir), port)
    try:
        wait_until(f"{name} {ready_path}", lambda: exporter.http.get(ready_path)[0] == 200,
                   timeout, proc=exporter.proc)  # fmt: skip
    except BaseException:
        exporter.stop()
        raise
    return exporter


def start_redis_exporter(rig: Rig) -> Exporter:
    port = rig.port_picker()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env["REDIS_PASSWORD"] = rig.password
    argv = [
        REDIS_EXPORTER,
        f"--redis.addr=rediss://{rig.nodes6[0]}",
        "--is-cluster",
        f"--tls-ca-cert-file={rig.tls.ca_file}",
        f"--web.listen-address={HOST}:{port}",
    ]
    return start_exporter(rig, "redis_exporter", argv, env, port, ready_path="/health")


def start_blackbox(rig: Rig) -> Exporter:
    port = rig.port_picker()
    argv = [
        BLACKBOX,
        f"--config.file={rig.blackbox_config}",
        f"--web.listen-address={HOST}:{port}",
        "--log.level=warn",
    ]
    return start_exporter(rig, "blackbox", argv, dict(os.environ), port,
                          ready_path="/-/healthy")  # fmt: skip


def blackbox_config(tls: Any, password: str) -> str:
    return f"""modules:
  redis_tls:
    prober: tcp
    timeout: 5s
    tcp:
      tls: true
      tls_config:
        ca_file: {tls.ca_file}
        server_name: 127.0.0.1
      query_response:
        - send: "AUTH {password}"
        - expect: "^\\\\+OK"
        - send: "PING"
        - expect: "^\\\\+PONG"
        - send: "QUIT"
        - expect: "^\\\\+OK"
  otlp_http:
    prober: http
    timeout: 5s
    http:
      method: POST
      headers:
        Content-Type: application/x-protobuf
      body: ""
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
"""


_RECEIVER = """
import asyncio
from exporter import demo_receiver

async def main():
    runner, port = await demo_receiver.start("127.0.0.1", 0)
    print(port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()

asyncio.run(main())
"""


# ---------------------------------------------------------------------- anchor cycles
def anchor_cycle(
    rig: Rig, redis_exp: Http | None, blackbox: Http | None, *, check: bool = False
) -> None:
    """What one depwatch cycle covers: 6 redis_exporter scrapes + 8 blackbox probes."""
    if redis_exp is not None:
        for node in rig.nodes6:
            text = redis_exp.text(f"/scrape?target=rediss://{node}", PROM_HEADERS)
            if check and one_value(text, "redis_up") != 1:
                raise BenchError(f"redis_exporter: redis_up != 1 for {node}")
    if blackbox is not None:
        targets = [("redis_tls", n, 1.0) for n in rig.nodes6]
        targets += [
            ("otlp_http", rig.otlp_targets[0], 1.0),
            ("otlp_http", rig.otlp_targets[1], 0.0),
        ]
        for module, target, expected in targets:
            text = blackbox.text(f"/probe?module={module}&target={target}", PROM_HEADERS)
            if check and one_value(text, "probe_success") != expected:
                raise BenchError(f"blackbox: probe_success != {expected} for {module} {target}")


def paced(rate: float, seconds: float, action: Callable[[], None]) -> int:
    """Run ``action`` ``rate`` times a second for ``seconds`` (no catch-up bursts)."""
    count = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        action()
        count += 1
        next_at = start + count / rate
        if next_at >= end:
            break
        time.sleep(max(0.0, next_at - time.monotonic()))
    return count


# ---------------------------------------------------------------- background driver
class Driver(threading.Thread):
    """Keeps the long-run exporters probing every 5 s while nothing else runs.

    Also samples depwatch's /status (one rtt sample per node per cycle) and records
    the RSS of the long-run processes once ``duration`` has elapsed.
    """

    def __init__(
        self, rig: Rig, dw: Exporter, re_: Exporter, bb: Exporter, duration: float
    ) -> None:
        super().__init__(name="bench-driver", daemon=True)
        self.rig, self.duration = rig, duration
        self.targets = (dw, re_, bb)
        self.busy = threading.Lock()  # held by the foreground during a measurement
        self.stopping = threading.Event()
        self.started_at = time.monotonic()
        self.rss_after: dict[str, float] = {}
        self.smaps_after: dict[str, float] = {}
        self.rss_elapsed = math.nan
        self.rtt_ms: list[float] = []
        self.ticks = 0
        self.errors: list[str] = []
        self._seen_cycle = -1
        self._http = {e.kind: Http(e.port) for e in self.targets}

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self.busy:
            yield

    def run(self) -> None:
        next_tick = time.monotonic()
        while not self.stopping.wait(max(0.0, next_tick - time.monotonic())):
            next_tick += INTERVAL
            if not self.rss_after and time.monotonic() - self.started_at >= self.duration:
                self.record_rss()
            self.sample_status()
            if self.busy.acquire(blocking=False):
                try:
                    self.tick()
                except (OSError, http.client.HTTPException, BenchError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                finally:
                    self.busy.release()

    def record_rss(self) -> None:
        self.rss_elapsed = time.monotonic() - self.started_at
        for exporter in self.targets:
            self.rss_after[exporter.kind] = rss_mib(exporter.proc.pid)
        self.smaps_after = smaps_rollup_mib(self.targets[0].proc.pid)

    def sample_status(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            status = json.loads(self._http["depwatch"].text("/status"))
            count = status["cycle"]["count"]
            if count != self._seen_cycle:
                self._seen_cycle = count
                self.rtt_ms += [n["rtt_ms"] for n in status["redis"]["nodes"] if n.get("rtt_ms")]

    def tick(self) -> None:
        self._http["depwatch"].get("/metrics", PROM_HEADERS)
        anchor_cycle(self.rig, self._http["redis_exporter"], self._http["blackbox"])
        self.ticks += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        for conn in self._http.values():
            conn.close()


# ------------------------------------------------------------------- measurements
def scrape_latencies(exporter: Exporter, n: int = 200) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, body bytes) over ``n`` keep-alive scrapes of its own /metrics."""
    conn = Http(exporter.port)
    try:
        conn.get("/metrics", PROM_HEADERS)  # connect + warm
        times, size = [], 0
        for _ in range(n):
            status, body, elapsed = conn.get("/metrics", PROM_HEADERS)
            if status != 200:
                raise BenchError(f"{exporter.kind} /metrics -> {status}")
            times.append(elapsed * 1000)
            size = len(body)
    finally:
        conn.close()
    return quantile(times, 0.5), quantile(times, 0.99), size


def ping_floor_ms(cluster: Any, n: int = 1000) -> float:
    """Median round trip of a sync redis-py PING on an open TLS connection."""
    with cluster.nodes[0].client() as client:
        for _ in range(50):
            client.ping()
        times = []
        for _ in range(n):
            started = time.perf_counter()
            client.ping()
            times.append((time.perf_counter() - started) * 1000)
    return median(times)


def cold_ping_floor_ms(cluster: Any, n: int = 18, gap: float = 1.0) -> float:
    """Median round trip of a sync redis-py PING on an open TLS connection, one PING
    per ``gap`` seconds of idleness (round robin over the nodes): what a check that
    runs once per interval can see, against the back-to-back loop of the floor."""
    clients = [node.client() for node in cluster.nodes]
    try:
        for client in clients:
            client.ping()
        times = []
        for i in range(n):
            time.sleep(gap)
            client = clients[i % len(clients)]
            started = time.perf_counter()
            client.ping()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        for client in clients:
            client.close()
    return median(times)


async def _timed_ping(conn: Any) -> float:
    """One PING on an open asyncio redis-py connection: its round trip in ms."""
    started = time.perf_counter()
    await conn.send_command("PING", check_health=False)
    await conn.read_response()
    return (time.perf_counter() - started) * 1000


async def _async_floors(cluster: Any, password: str, rounds: int) -> tuple[float, float]:
    conns = _raw_connections(cluster, password)
    try:
        for conn in conns:
            await conn.connect()
        for _ in range(20):
            await _timed_ping(conns[0])
        single = [await _timed_ping(conns[0]) for _ in range(rounds * len(conns))]
        concurrent: list[float] = []
        for _ in range(rounds):
            concurrent += await asyncio.gather(*(_timed_ping(c) for c in conns))
    finally:
        for conn in conns:
            await conn.disconnect()
    return median(single), median(concurrent)


def _raw_connections(cluster: Any, password: str) -> list[Any]:
    """One unconnected asyncio redis-py TLS connection per node, as depwatch opens them
    (RESP2, no client-info commands)."""
    from redis.asyncio.connection import SSLConnection

    return [
        SSLConnection(host=n.host, port=n.port, password=password, protocol=2,
                      ssl_ca_certs=str(cluster.tls.ca_file), decode_responses=True,
                      driver_info=None)
        for n in cluster.nodes
    ]  # fmt: skip


async def _raw_cycles(cluster: Any, password: str, cycles: int, gap: float) -> dict[str, float]:
    from redis.asyncio.connection import SSLConnection

    conns = _raw_connections(cluster, password)

    async def info(conn: SSLConnection) -> None:
        await conn.send_command("INFO", "clients", "stats", "replication", check_health=False)
        await conn.read_response()

    times: list[float] = []
    pings: list[float] = []
    cold: list[float] = []
    try:
        for conn in conns:
            await conn.connect()
        for _ in range(cycles):
            await asyncio.sleep(gap)
            began = time.perf_counter()
            for conn in conns:
                await info(conn)
                pings.append(await _timed_ping(conn))
            times.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(gap)
            for conn in conns:  # the order depwatch used before: PING first
                cold.append(await _timed_ping(conn))
            await asyncio.gather(*(info(c) for c in conns))
    finally:
        for conn in conns:
            await conn.disconnect()
    return {"nodes": len(conns), "cycle_ms": round(median(times), 2),
            "ping_ms": round(median(pings), 3),
            "ping_first_ms": round(median(cold), 3)}  # fmt: skip


def raw_redis_cycle(cluster: Any, password: str, cycles: int = 20) -> dict[str, float]:
    """depwatch's Redis work done by bare asyncio redis-py, for scale: per node, one
    after another, INFO then PING (timed), once a second on open TLS connections (no
    timeouts, classification, snapshot or exposition). Alternate seconds time the
    other order, each node's PING first and the INFOs after: ``ping_first_ms``."""
    try:
        return asyncio.run(_raw_cycles(cluster, password, cycles, 1.0))
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not end the run
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}  # type: ignore[dict-item]


def async_floors_ms(cluster: Any, password: str, rounds: int = 200) -> tuple[float, float]:
    """asyncio redis-py PING median: one connection alone; one per node, all concurrent."""
    return asyncio.run(_async_floors(cluster, password, rounds))


class CommandCounter:
    """Per-node command totals from INFO commandstats, on connections opened up front."""

    def __init__(self, cluster: Any) -> None:
        self.clients = {n.address: n.client() for n in cluster.nodes}
        for client in self.clients.values():
            client.ping()

    def snapshot(self) -> dict[str, dict[str, int]]:
        out = {}
        for address, client in self.clients.items():
            stats = client.info("commandstats")
            out[address] = {
                key.removeprefix("cmdstat_"): int(v.get("calls", 0))
                + int(v.get("rejected_calls", 0))
                for key, v in stats.items()
            }
        return out

    @staticmethod
    def by_command(
        before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
    ) -> dict[str, dict[str, int]]:
        """Per node, per command: calls in between (this counter's own INFO and the
        replicas' REPLCONF acks left out)."""
        out = {}
        for address, now in after.items():
            then = before.get(address, {})
            calls = {cmd: n - then.get(cmd, 0) for cmd, n in now.items() if cmd != "replconf"}
            calls["info"] = calls.get("info", 0) - 1  # the snapshot's own INFO
            out[address] = {cmd: n for cmd, n in calls.items() if n}
        return out

    @staticmethod
    def delta(
        before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
    ) -> dict[str, int]:
        """Commands each node received in between."""
        by = CommandCounter.by_command(before, after)
        return {address: sum(calls.values()) for address, calls in by.items()}

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def cycle_count(dw: Exporter) -> int:
    return int(json.loads(dw.http.text("/status"))["cycle"]["count"])


def wait_next_cycle(dw: Exporter, timeout: float = 15.0) -> int:
    """Block until depwatch finishes a cycle; returns the new count (just after the cycle)."""
    start = cycle_count(dw)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.01)
        count = cycle_count(dw)
        if count != start:
            time.sleep(0.1)  # let the cycle's last reply land
            return count
    raise BenchError(f"depwatch finished no cycle within {timeout}s")


def depwatch_commands(
    dw: Exporter, counter: CommandCounter, rate: float, seconds: float
) -> dict[str, float]:
    """Per-node commands per cycle while /metrics is scraped ``rate`` times a second."""
    scraper = Http(dw.port)
    try:
        first = wait_next_cycle(dw)
        before = counter.snapshot()
        paced(rate, seconds, lambda: scraper.get("/metrics", PROM_HEADERS))
        last = wait_next_cycle(dw)
        after = counter.snapshot()
    finally:
        scraper.close()
    cycles = last - first
    by = counter.by_command(before, after)
    total = {address: sum(calls.values()) for address, calls in by.items()}
    steady = {address: _steady(calls) for address, calls in by.items()}
    summed: dict[str, int] = {}
    for calls in by.values():
        for cmd, n in calls.items():
            summed[cmd] = summed.get(cmd, 0) + n
    return {
        "cycles": cycles,
        "max": max(total.values()) / cycles,
        "mean": statistics.mean(total.values()) / cycles,
        "max_steady": max(steady.values()) / cycles,
        "all_nodes_by_command": summed,  # type: ignore[dict-item]
    }


_TOPOLOGY_READS = ("cluster|shards", "cluster|slots", "cluster|nodes")


def _steady(calls: dict[str, int]) -> int:
    """A node's commands minus topology refreshes: CLUSTER *, and the AUTH + CLIENT
    SETNAME of the short-lived connection each refresh opens (at most one pair per
    topology read; any other AUTH is a reconnection and stays counted)."""
    refreshes = sum(calls.get(cmd, 0) for cmd in _TOPOLOGY_READS)
    setup = calls.get("auth", 0) + calls.get("client|setname", 0)
    cluster = sum(n for cmd, n in calls.items() if cmd.startswith("cluster"))
    return sum(calls.values()) - cluster - min(setup, 2 * refreshes)


def anchor_commands(
    rig: Rig,
    dw: Exporter,
    counter: CommandCounter,
    which: Exporter,
    *,
    rate: float,
    seconds: float = 3.5,
) -> dict[str, float]:
    """Per-node commands per 5 s for one anchor scraped ``rate`` times a second.

    The window sits between two depwatch cycles; a depwatch cycle that lands in it
    anyway is subtracted (2 commands per node).
    """
    re_ = which.http if which.kind == "redis_exporter" else None
    bb = which.http if which.kind == "blackbox" else None
    first = wait_next_cycle(dw)
    before = counter.snapshot()
    cycles = paced(rate, seconds, lambda: anchor_cycle(rig, re_, bb))
    after = counter.snapshot()
    stray = cycle_count(dw) - first
    per_node = {a: c - 2 * stray for a, c in counter.delta(before, after).items()}
    per_cycle = max(per_node.values()) / cycles
    return {
        "per_scrape": per_cycle,
        "per_interval": per_cycle * rate * INTERVAL,
        "achieved_rate": cycles / seconds,
    }


def depwatch_window(dw: Exporter, seconds: float) -> dict[str, float]:
    """CPU per cycle, cycle time and PING of a 1 s-interval depwatch.

    First half: left alone (probe-only CPU). Second half: ``/metrics`` scraped once a
    second, as Prometheus scraping every cycle would (full-cycle CPU). The cycles run
    at a fixed rate, so CPU per cycle is CPU per second x the 1 s interval; cycle time
    and PING come from the histograms' sum/count deltas over the whole window.
    """
    scraper = Http(dw.port)
    try:
        time.sleep(2.0)  # past start-up and the first cycles
        table = socket_table_size()
        text0 = scraper.text("/metrics", PROM_HEADERS)
        cpu0, t0 = cpu_seconds(dw.proc.pid), time.monotonic()
        time.sleep(seconds / 2)
        cpu1, t1 = cpu_seconds(dw.proc.pid), time.monotonic()
        paced(1.0, seconds / 2, lambda: scraper.get("/metrics", PROM_HEADERS))
        cpu2, t2 = cpu_seconds(dw.proc.pid), time.monotonic()
        text1 = scraper.text("/metrics", PROM_HEADERS)
    finally:
        scraper.close()

    def delta(name: str) -> float:
        return sum(v for _, v in samples(text1, name)) - sum(v for _, v in samples(text0, name))

    cycles = delta("depwatch_probe_cycle_duration_seconds_count")
    pings = delta("redis_health_check_duration_seconds_count")
    return {
        "cycles": cycles,
        "socket_table_lines": table,
        "cpu_probe_only_ms": (cpu1 - cpu0) / (t1 - t0) * 1000,
        "cpu_ms": (cpu2 - cpu1) / (t2 - t1) * 1000,
        "cycle_ms": delta("depwatch_probe_cycle_duration_seconds_sum") * 1000 / cycles,
        "ping_mean_ms": delta("redis_health_check_duration_seconds_sum") * 1000 / pings
        if pings
        else math.nan,
    }


def socket_table_size() -> int:
    """Lines in /proc/net/tcp{,6}: every depwatch cycle parses all of them (the anchors'
    short-lived connections leave TIME_WAIT entries there for 60 s)."""
    lines = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            lines += len(Path(f"/proc/net/{table}").read_bytes().splitlines()) - 1
    return lines


def _cycles(text: str) -> float:
    return one_value(text, "depwatch_probe_cycle_duration_seconds_count")


def anchors_cpu_window(rig: Rig, re_: Exporter, bb: Exporter, seconds: float) -> dict[str, float]:
    cpu0 = {e.kind: cpu_seconds(e.proc.pid) for e in (re_, bb)}
    cycles = paced(1.0, seconds, lambda: anchor_cycle(rig, re_.http, bb.http))
    time.sleep(0.2)
    return {e.kind: (cpu_seconds(e.proc.pid) - cpu0[e.kind]) * 1000 / cycles for e in (re_, bb)}


def rtt_histogram_mean_ms(dw: Exporter) -> float:
    text = dw.http.text("/metrics")
    sums = sum(v for _, v in samples(text, "redis_health_check_duration_seconds_sum"))
    counts = sum(v for _, v in samples(text, "redis_health_check_duration_seconds_count"))
    return sums / counts * 1000 if counts else math.nan


# -------------------------------------------------------------------- diagnostics
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")

_RSS_STEPS_SNIPPET = """
import importlib, json, sys

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

steps = [["(bare interpreter)", rss_kib()]]
for label, modules in json.load(sys.stdin):
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    steps.append([label, rss_kib()])
print(json.dumps(steps))
"""

_TRACEMALLOC_SNIPPET = """
import importlib, json, sys, tracemalloc
modules = json.load(sys.stdin)
tracemalloc.start()
for name in modules:
    try:
        importlib.import_module(name)
    except Exception:
        pass
by = {}
for stat in tracemalloc.take_snapshot().statistics("filename"):
    path = stat.traceback[0].filename
    if "site-packages/" in path:
        key = path.split("site-packages/", 1)[1].split("/", 1)[0]
        key = key.removesuffix(".py").split(".", 1)[0].split("-", 1)[0]
    elif "/exporter/" in path:
        key = "exporter"
    elif path.startswith("<frozen"):
        key = "module code objects (importlib)"
    else:
        key = "stdlib"
    by[key] = by.get(key, 0) + stat.size
print(json.dumps(by))
"""


def import_profile(rig: Rig) -> tuple[list[str], dict[str, float]]:
    """Modules ``depwatch serve`` imports up to its first cycle (in completion order,
    so dependencies come first), and import self time by top-level package."""
    argv = [sys.executable, "-X", "importtime", "-m", "exporter", "serve"]
    dw = start_depwatch(rig, name="depwatch-importtime", argv=argv)
    dw.stop()
    modules, self_us = [], {}
    for line in dw.proc.log_path.read_text(errors="replace").splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            name = match.group(4)
            modules.append(name)
            root = name.split(".", 1)[0]
            self_us[root] = self_us.get(root, 0) + int(match.group(1))
    modules = [m for m in dict.fromkeys(modules) if not m.startswith("__main__")]
    return modules, {k: v / 1000 for k, v in self_us.items()}


def _run_snippet(snippet: str, payload: object) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        input=json.dumps(payload), capture_output=True, text=True, timeout=120,
        check=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(done.stdout)


def import_rss_steps(modules: Sequence[str]) -> dict[str, float]:
    """RSS added by each group of depwatch's imports, imported in dependency order:
    the stdlib first, then each third-party package, then depwatch's own modules.
    Additive: the steps sum to the RSS after every import."""

    def root(m: str) -> str:
        return m.split(".", 1)[0]

    stdlib = [m for m in modules if root(m) in sys.stdlib_module_names]
    third_party: dict[str, list[str]] = {}
    last_seen: dict[str, int] = {}
    for index, m in enumerate(modules):
        r = root(m)
        if r not in sys.stdlib_module_names and r != "exporter":
            third_party.setdefault(r, []).append(m)
            last_seen[r] = index
    # a package whose last module completes earlier is (mostly) a dependency of later ones
    groups: dict[str, list[str]] = {"stdlib (asyncio, ssl, email, ...)": stdlib}
    for r in sorted(third_party, key=last_seen.__getitem__):
        groups[r] = third_party[r]
    groups["exporter (depwatch's own)"] = [m for m in modules if root(m) == "exporter"]
    steps = _run_snippet(_RSS_STEPS_SNIPPET, list(groups.items()))
    out = {steps[0][0]: round(steps[0][1] / 1024, 1)}
    for (label, kib), (_, before) in zip(steps[1:], steps, strict=False):
        if kib - before >= 256:
            out[label] = round((kib - before) / 1024, 1)
    out["= after all imports"] = round(steps[-1][1] / 1024, 1)
    return out


def _sock_diag_dump(family: int) -> int:
    """Sockets of one family from a NETLINK_SOCK_DIAG dump (what ``ss`` uses)."""
    import socket
    import struct

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
    try:
        # inet_diag_req_v2: family, protocol, ext, pad, states (all), a zeroed sockid
        request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + bytes(48)
        # nlmsghdr: len, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, pid
        sock.send(struct.pack("=IHHII", 16 + len(request), 20, 0x301, 1, 0) + request)
        count = 0
        for _ in range(100_000):
            data = sock.recv(1 << 16)
            offset = 0
            while offset < len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == 3:  # NLMSG_DONE
                    return count
                if kind == 2:  # NLMSG_ERROR
                    raise OSError("sock_diag dump failed")
                count += 1
                offset += (length + 3) & ~3
        raise OSError("sock_diag dump did not end")
    finally:
        sock.close()


def socket_table_cost(n: int = 30) -> dict[str, float]:
    """Reading /proc/net/tcp{,6} against sock_diag netlink dumps of the same sockets:
    one SOCK_DIAG_BY_FAMILY dump per family, and depwatch's reader (one
    TCPDIAG_GETSOCK dump for both families, parsed). Each walks the kernel's whole
    established hash, whose size is set by the host's RAM, not by the pod's sockets."""
    import socket

    def proc_tables() -> int:
        return sum(
            len(Path(f"/proc/net/{t}").read_bytes().splitlines()) - 1 for t in ("tcp", "tcp6")
        )

    def netlink() -> int:
        return _sock_diag_dump(socket.AF_INET) + _sock_diag_dump(socket.AF_INET6)

    def depwatch_dump() -> int:
        from exporter.sockets.sock_diag import dump_tcp

        return sum(len(chunk) for chunk in dump_tcp())

    out: dict[str, float] = {}
    readers = (
        ("proc_net_tcp_tcp6", proc_tables),
        ("sock_diag_by_family_v4_v6", netlink),
        ("sock_diag_depwatch_one_dump", depwatch_dump),
    )
    for label, read in readers:
        try:
            out[f"{label}_sockets"] = read()
            started = time.perf_counter()
            for _ in range(n):
                read()
            out[f"{label}_ms"] = round((time.perf_counter() - started) / n * 1000, 2)
        except OSError as exc:
            out[f"{label}_error"] = str(exc)  # type: ignore[assignment]
    with contextlib.suppress(OSError):
        out["tcp_ehash_entries"] = int(Path("/proc/sys/net/ipv4/tcp_ehash_entries").read_text())
    return out


def render_cost_ms(text: str) -> dict[str, float]:
    """What one /metrics render costs prometheus_client for depwatch's series (the body
    re-parsed into families, rendered 50 times in each format)."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
    from prometheus_client.parser import text_string_to_metric_families

    families = list(text_string_to_metric_families(text))

    class Fixed:
        def collect(self) -> list[Any]:
            return families

    out: dict[str, float] = {"samples": sum(len(f.samples) for f in families)}
    for label, encoder in (("openmetrics", generate_openmetrics), ("text_0.0.4", generate_latest)):
        started = time.perf_counter()
        for _ in range(50):
            body = encoder(Fixed())  # type: ignore[arg-type]
        out[f"{label}_ms"] = round((time.perf_counter() - started) / 50 * 1000, 2)
        started = time.perf_counter()
        for _ in range(50):
            gzip.compress(body, compresslevel=6)
        out[f"{label}_gzip_ms"] = round((time.perf_counter() - started) / 50 * 1000, 2)
    return out


def diagnose(rig: Rig, *, smaps: dict[str, float], metrics_text: str,
             window: float) -> dict[str, Any]:  # fmt: skip
    log("diagnostics: what depwatch's cycle costs without OTLP / the socket table")
    variants: dict[str, dict[str, float]] = {}
    no_otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": None}
    no_table = {"DEPWATCH_PROC_ROOT": "/nonexistent"}
    small = (
        ("no socket table (OTLP kept)", no_table),
        ("no OTLP (socket table kept)", no_otlp),
        ("redis only (no OTLP, no socket table)", {**no_otlp, **no_table}),
    )
    big = (
        ("30 nodes, no socket table (OTLP kept)", no_table),
        ("30 nodes, redis only", {**no_otlp, **no_table}),
    )

    def measure(label: str, changes: dict[str, str | None], cluster: Any) -> None:
        dw = start_depwatch(
            rig, interval="1s", cluster=cluster, name="depwatch-variant", env_changes=changes
        )
        try:
            found = depwatch_window(dw, window)
            found["rss_mib"] = rss_mib(dw.proc.pid)
        finally:
            dw.stop()
        variants[label] = {k: round(v, 2) for k, v in found.items()}

    raw: dict[str, dict[str, float]] = {}
    for label, changes in small:
        measure(label, changes, rig.cluster6)
    raw["6"] = raw_redis_cycle(rig.cluster6, rig.password)
    with rig.big_cluster() as cluster30:
        for label, changes in big:
            measure(label, changes, cluster30)
        raw["30"] = raw_redis_cycle(cluster30, rig.password)
    log("diagnostics: import profile of `depwatch serve`, RSS per package, tracemalloc")
    modules, self_ms = import_profile(rig)
    roots = sorted(self_ms, key=lambda r: -self_ms[r])
    traced = _run_snippet(_TRACEMALLOC_SNIPPET, modules)
    return {
        "cycle_variants_1s": variants,
        "raw_redis_py_cycle": raw,
        "modules_imported": len(modules),
        "import_self_ms_top": {r: round(self_ms[r], 1) for r in roots[:10]},
        "rss_mib_added_by_import_step": import_rss_steps(modules),
        "tracemalloc_import_mib": {
            k: round(v / 2**20, 1) for k, v in sorted(traced.items(), key=lambda kv: -kv[1])[:8]
        },
        "smaps_rollup_after_run_mib": smaps,
        "metrics_render": render_cost_ms(metrics_text),
        "socket_table_read": socket_table_cost(),
        "info_parse": info_parse_cost(rig),
    }


def info_parse_cost(rig: Rig) -> dict[str, float]:
    """Size of one full INFO reply and the cost of depwatch's parse of it, against the
    4 sections depwatch reads fields from (server, clients, stats, replication)."""
    from exporter.redis_parse import parse_node_info

    with rig.cluster6.nodes[0].client() as client:
        conn = client.connection_pool.get_connection()
        try:
            replies = []
            for command in (("INFO",), ("INFO", "server", "clients", "stats", "replication")):
                conn.send_command(*command)
                replies.append(str(conn.read_response()))
        finally:
            client.connection_pool.release(conn)
    out: dict[str, float] = {}
    for label, text in zip(("full", "4_sections"), replies, strict=True):
        n = 2000
        started = time.perf_counter()
        for _ in range(n):
            parse_node_info(text)
        out[f"{label}_bytes"] = len(text)
        out[f"{label}_parse_us"] = round((time.perf_counter() - started) / n * 1e6, 1)
    return out


# --------------------------------------------------------------------------- table
@dataclass
class Row:
    metric: str
    depwatch: float | str
    redis_exporter: float | str = "-"
    blackbox: float | str = "-"
    ratio: str = ""
    target: str = ""
    met: bool | None = None


def fmt(value: float | str, digits: int = 2) -> str:
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def render_table(rows: Sequence[Row]) -> str:
    header = ["metric", "depwatch", "redis_exporter", "blackbox", "ratio", "target", "met?"]
    cells = [header] + [
        [
            r.metric,
            fmt(r.depwatch),
            fmt(r.redis_exporter),
            fmt(r.blackbox),
            r.ratio,
            r.target,
            "" if r.met is None else ("yes" if r.met else "NO"),
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def build_rows(r: dict[str, Any], duration_label: str) -> list[Row]:
    rows = []
    for key, label in (
        ("rss_start", "RSS after start (MiB)"),
        ("rss_after", f"RSS after {duration_label} (MiB)"),
    ):
        dw, re_, bb = r[key]["depwatch"], r[key]["redis_exporter"], r[key]["blackbox"]
        rows.append(
            Row(
                label,
                dw,
                re_,
                bb,
                f"{dw / (re_ + bb):.2f} x (re+bb)",
                "<= 1.0 x (re+bb)",
                dw <= re_ + bb,
            )
        )
    lat = r["latency"]
    rows.append(
        Row(
            "/metrics p50 (ms)",
            lat["depwatch"]["p50"],
            lat["redis_exporter"]["p50"],
            lat["blackbox"]["p50"],
            f"{lat['depwatch']['p50'] / lat['blackbox']['p50']:.2f} x bb, "
            f"{lat['depwatch']['p50'] / lat['redis_exporter']['p50']:.2f} x re",
        )
    )
    dw99, re99, bb99 = (lat[k]["p99"] for k in ("depwatch", "redis_exporter", "blackbox"))
    rows.append(
        Row(
            "/metrics p99 (ms)",
            dw99,
            re99,
            bb99,
            f"{dw99 / bb99:.2f} x bb, {dw99 / re99:.2f} x re",
            "<= 1.0 x bb and <= 0.2 x re",
            dw99 <= bb99 and dw99 <= 0.2 * re99,
        )
    )
    cpu = r["cpu"]
    anchors = cpu["redis_exporter"] + cpu["blackbox"]
    rows.append(
        Row(
            "CPU per full cycle (CPU-ms)",
            cpu["depwatch"],
            cpu["redis_exporter"],
            cpu["blackbox"],
            f"{cpu['depwatch'] / anchors:.2f} x (re+bb)",
            "<= 0.25 x (re+bb)",
            cpu["depwatch"] <= 0.25 * anchors,
        )
    )
    rows.append(Row("  CPU per cycle, probe only (CPU-ms)", cpu["depwatch_probe_only"]))
    rows.append(Row("  CPU per cycle, 30 nodes (CPU-ms)", cpu["depwatch_30"]))
    ping = r["ping"]
    rows.append(
        Row(
            "PING median reported (ms)",
            ping["reported_p50"],
            ratio=(f"{ping['reported_p50'] / ping['floor']:.2f} x floor"),
            target=f"<= 1.5 x floor ({ping['floor']:.3f} ms)",
            met=ping["reported_p50"] <= 1.5 * ping["floor"],
        )
    )
    rows.append(
        Row(
            "  PING mean from histogram (ms)",
            ping["histogram_mean"],
            ratio=f"{ping['histogram_mean'] / ping['floor']:.2f} x floor",
        )
    )
    rows.append(
        Row(
            "  floor: asyncio, 1 conn (ms)",
            ping["async_single"],
            ratio=f"{ping['async_single'] / ping['floor']:.2f} x floor",
        )
    )
    rows.append(
        Row(
            "  floor: asyncio, 6 concurrent (ms)",
            ping["async_concurrent"],
            ratio=f"{ping['async_concurrent'] / ping['floor']:.2f} x floor",
        )
    )
    if "cold" in ping:
        rows.append(
            Row(
                "  sync redis-py, one PING per 1 s idle (ms)",
                ping["cold"],
                ratio=f"{ping['cold'] / ping['floor']:.2f} x floor; depwatch "
                f"{ping['reported_p50'] / ping['cold']:.2f} x this",
            )
        )
    cyc = r["cycle"]
    rows.append(Row("probe cycle, 6 nodes (ms)", cyc["6"]))
    lines = r["socket_table_lines"]
    rows.append(
        Row("  /proc/net/tcp{,6} lines (6 / 30 nodes)", f"{lines['6']:.0f} / {lines['30']:.0f}")
    )
    rows.append(
        Row(
            "probe cycle, 30 nodes (ms)",
            cyc["30"],
            ratio=f"{cyc['30'] / cyc['6']:.2f} x 6",
            target="<= 1.5 x 6-node",
            met=cyc["30"] <= 1.5 * cyc["6"],
        )
    )
    raw = r.get("diagnostics", {}).get("raw_redis_py_cycle", {})
    if "cycle_ms" in raw.get("6", {}) and "cycle_ms" in raw.get("30", {}):
        six, thirty = raw["6"]["cycle_ms"], raw["30"]["cycle_ms"]
        rows.append(
            Row(
                "  bare redis-py, Redis work only, 6 / 30 nodes (ms)",
                f"{six:.2f} / {thirty:.2f}",
                ratio=f"{thirty / six:.2f} x 6; PING {raw['6']['ping_ms']:.3f} ms"
                + (f", PING first {raw['6']['ping_first_ms']:.3f} ms"
                   if "ping_first_ms" in raw["6"] else ""),
            )
        )
    cmds = r["commands"]
    for rate in ("1", "10"):
        dw = cmds["depwatch"][rate]
        other = cmds["depwatch"]["10" if rate == "1" else "1"]
        independent = abs(dw["max_steady"] - other["max_steady"]) < 0.25
        rows.append(
            Row(
                f"cmds/node/5s @ {rate} scrape/s (max node)",
                dw["max_steady"],
                cmds["redis_exporter"][rate]["per_interval"],
                cmds["blackbox"][rate]["per_interval"],
                f"+ topology refresh: {dw['max']:.2f}, mean {dw['mean']:.2f}",
                "<= 2 + refreshes, same at 1/10/s",
                dw["max_steady"] <= 2.0 and independent,
            )
        )
    rows.append(Row("start to /readyz (s)", r["startup_s"]))
    return rows


# ---------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="60 s long run, 2 repeats, shorter windows (~4 min; the default run takes ~8 min)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of probing before 'RSS after' (default 300; --quick 60)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="default 3; --quick 2")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and configs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    args.duration = args.duration or (60.0 if args.quick else 300.0)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.window = 10.0 if args.quick else 20.0  # CPU / cycle-time windows
    args.cmd_window = 10.0 if args.quick else 30.0  # commandstats windows (depwatch)
    return args


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for binary in (REDIS_EXPORTER, BLACKBOX):
        if not os.access(binary, os.X_OK):
            print(
                f"compare.py: {binary} not found (apt-get install {Path(binary).name})",
                file=sys.stderr,
            )
            return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    sys.path.insert(0, str(ROOT / "tests"))
    from support.redis_servers import (
        REDIS_PASSWORD,
        RedisCluster,
        RedisServerError,
        free_port,
        make_tls_material,
    )

    began = time.monotonic()
    mode = "quick" if args.quick else "default"
    log(
        f"mode {mode}: long run {args.duration:.0f} s, {args.repeats} repeats, "
        f"CPU windows {args.window:.0f} s, commandstats windows {args.cmd_window:.0f} s"
    )
    workdir = Path(tempfile.mkdtemp(prefix="depwatch-bench-"))
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if not args.keep_workdir:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        tls = make_tls_material(workdir / "tls")
        log("starting the 3+3 TLS cluster")
        made = iter(range(1000))

        def start_cluster(primaries: int) -> Any:
            """A started cluster; fresh ports when one was taken in the meantime (other
            test runs on this machine pick ports too). Cleans up after itself on failure."""
            for attempt in range(3):
                cluster = RedisCluster(
                    workdir / f"c{primaries * 2}-{next(made)}",
                    primaries=primaries,
                    replicas_per_primary=1,
                    tls=tls,
                    password=REDIS_PASSWORD,
                    ready_timeout=120,
                )
                try:
                    cluster.start()
                except RedisServerError as exc:
                    if attempt == 2 or "Address already in use" not in str(exc):
                        raise
                    log("  a cluster port was taken meanwhile; retrying on fresh ports")
                    continue
                return cluster
            raise AssertionError("unreachable")

        cluster6 = start_cluster(3)
        stack.callback(cluster6.stop)

        def start_cluster30() -> Any:
            log("  starting a 15+15 TLS cluster")
            return start_cluster(15)

        receiver = Proc(
            "receiver",
            [sys.executable, "-c", _RECEIVER],
            env=dict(os.environ),
            logdir=workdir,
            stdout_pipe=True,
        )
        stack.callback(receiver.stop)
        receiver_port = int(receiver.read_line(30))
        config = workdir / "blackbox.yml"
        config.write_text(blackbox_config(tls, REDIS_PASSWORD))
        rig = Rig(
            workdir,
            tls,
            cluster6,
            start_cluster30,
            receiver_port,
            free_port(),
            config,
            REDIS_PASSWORD,
            free_port,
        )
        log(
            f"cluster up ({len(cluster6.addresses)} nodes), "
            f"OTLP/HTTP receiver on :{receiver_port}, nothing on the gRPC port :{rig.grpc_port}"
        )

        # -- 1. RSS after start, fresh processes, alternating order ------------------
        rss_start: dict[str, list[float]] = {"depwatch": [], "redis_exporter": [], "blackbox": []}
        startup: list[float] = []
        for rep in range(args.repeats):
            order = ["depwatch", "redis_exporter", "blackbox"]
            order = order[rep % 3 :] + order[: rep % 3]
            for kind in order:
                t0 = time.monotonic()
                if kind == "depwatch":
                    exporter = start_depwatch(rig)
                    startup.append(time.monotonic() - t0)
                    exporter.http.get("/metrics", PROM_HEADERS)
                else:
                    exporter = (
                        start_redis_exporter if kind == "redis_exporter" else start_blackbox
                    )(rig)
                    anchor_cycle(
                        rig,
                        exporter.http if kind == "redis_exporter" else None,
                        exporter.http if kind == "blackbox" else None,
                        check=True,
                    )
                try:
                    time.sleep(1.0)
                    rss_start[kind].append(rss_mib(exporter.proc.pid))
                finally:
                    exporter.stop()
            log(
                f"RSS after start, repeat {rep + 1}: "
                + ", ".join(f"{k} {v[-1]:.1f} MiB" for k, v in rss_start.items())
            )
        results["rss_start"] = {k: median(v) for k, v in rss_start.items()}
        results["rss_start_samples"] = rss_start
        results["startup_s"] = median(startup)

        # -- 2. the long run ----------------------------------------------------------
        log(
            f"long run: depwatch (5 s), redis_exporter, blackbox side by side for "
            f"{args.duration:.0f} s"
        )
        dw = start_depwatch(rig)
        stack.callback(dw.stop)
        re_ = start_redis_exporter(rig)
        stack.callback(re_.stop)
        bb = start_blackbox(rig)
        stack.callback(bb.stop)
        anchor_cycle(rig, re_.http, bb.http, check=True)
        otlp_series = len(samples(dw.http.text("/metrics"), "otlp_export_probes_total"))
        results["depwatch_otlp_probe_series"] = otlp_series
        if otlp_series == 0:
            log(
                "NOTE: depwatch exports no otlp_export_probes_total series: its OTLP probes are "
                "not wired in this build, so its cycle covers the 6 Redis nodes only"
            )
        driver = Driver(rig, dw, re_, bb, args.duration)
        driver.start()
        stack.callback(driver.stop)

        # 2a. /metrics latency and the PING floor, alternating
        lat: dict[str, dict[str, list[float]]] = {
            k: {"p50": [], "p99": []} for k in ("depwatch", "redis_exporter", "blackbox")
        }
        floors: list[float] = []
        sizes: dict[str, int] = {}
        for rep in range(args.repeats):
            order = [dw, re_, bb]
            order = order[rep % 3 :] + order[: rep % 3]
            with driver.paused():
                for exporter in order:
                    p50, p99, sizes[exporter.kind] = scrape_latencies(exporter)
                    lat[exporter.kind]["p50"].append(p50)
                    lat[exporter.kind]["p99"].append(p99)
                floors.append(ping_floor_ms(cluster6))
            log(
                f"/metrics p50/p99 ms, repeat {rep + 1}: "
                + ", ".join(f"{k} {v['p50'][-1]:.2f}/{v['p99'][-1]:.2f}" for k, v in lat.items())
                + f"; PING floor {floors[-1]:.3f} ms"
            )
            time.sleep(1.0)
        results["latency"] = {k: {q: median(v[q]) for q in v} for k, v in lat.items()}
        results["metrics_body_bytes"] = sizes
        with driver.paused():
            single, concurrent = async_floors_ms(cluster6, REDIS_PASSWORD)
            cold = cold_ping_floor_ms(cluster6)

        # 2b. CPU per cycle and cycle time, 6 and 30 nodes, alternating (before the
        # commandstats windows, whose 10/s anchor scrapes leave ~500 TIME_WAIT sockets)
        log("CPU per cycle and cycle time (1 s-interval depwatch on 6 and 30 nodes; anchors)")
        windows: dict[str, list[dict[str, float]]] = {"6": [], "30": []}
        anchor_cpu: dict[str, list[float]] = {"redis_exporter": [], "blackbox": []}
        for rep in range(args.repeats):
            with driver.paused():
                for step in ("6", "anchors", "30") if rep % 2 == 0 else ("30", "anchors", "6"):
                    if step == "anchors":
                        for kind, value in anchors_cpu_window(rig, re_, bb, args.window).items():
                            anchor_cpu[kind].append(value)
                        continue
                    with contextlib.ExitStack() as window_stack:
                        cluster = (
                            window_stack.enter_context(rig.big_cluster())
                            if step == "30"
                            else cluster6
                        )
                        fast = start_depwatch(
                            rig, interval="1s", cluster=cluster, name=f"depwatch-1s-{step}"
                        )
                        window_stack.callback(fast.stop)
                        windows[step].append(depwatch_window(fast, args.window))
            w6, w30 = windows["6"][-1], windows["30"][-1]
            log(
                f"  repeat {rep + 1}: CPU-ms/cycle depwatch 6 nodes {w6['cpu_ms']:.1f} (probe "
                f"only {w6['cpu_probe_only_ms']:.1f}), 30 nodes {w30['cpu_ms']:.1f}, "
                f"redis_exporter {anchor_cpu['redis_exporter'][-1]:.1f}, "
                f"blackbox {anchor_cpu['blackbox'][-1]:.1f}; cycle ms 6 nodes "
                f"{w6['cycle_ms']:.1f}, 30 nodes {w30['cycle_ms']:.1f}; socket table lines "
                f"{w6['socket_table_lines']}/{w30['socket_table_lines']}"
            )

        def med(step: str, key: str) -> float:
            return median([w[key] for w in windows[step]])

        results["cpu"] = {
            "depwatch": med("6", "cpu_ms"),
            "depwatch_probe_only": med("6", "cpu_probe_only_ms"),
            "depwatch_30": med("30", "cpu_ms"),
            **{k: median(v) for k, v in anchor_cpu.items()},
        }
        results["cycle"] = {"6": med("6", "cycle_ms"), "30": med("30", "cycle_ms")}
        results["socket_table_lines"] = {
            "6": med("6", "socket_table_lines"),
            "30": med("30", "socket_table_lines"),
        }
        results["windows_1s"] = windows
        results["anchor_cpu_samples"] = anchor_cpu

        # 2c. commands per node per interval (only one exporter touches the cluster)
        log("commands per node: INFO commandstats deltas at 1 and 10 scrapes/s")
        counter = CommandCounter(cluster6)
        stack.callback(counter.close)
        for client in counter.clients.values():
            client.config_set("repl-timeout", 3600)
            client.config_set("repl-ping-replica-period", 3600)
        cmds: dict[str, dict[str, dict[str, float]]] = {
            "depwatch": {},
            "redis_exporter": {},
            "blackbox": {},
        }
        with driver.paused():
            for rate in (1, 10):
                cmds["depwatch"][str(rate)] = depwatch_commands(dw, counter, rate, args.cmd_window)
                for anchor in (re_, bb):
                    cmds[anchor.kind][str(rate)] = anchor_commands(
                        rig, dw, counter, anchor, rate=rate
                    )
                found = cmds["depwatch"][str(rate)]
                log(
                    f"  @{rate}/s: depwatch max {found['max_steady']:.2f}/node/cycle "
                    f"({found['max']:.2f} with topology refreshes) over {found['cycles']} cycles"
                    f" {found['all_nodes_by_command']}; redis_exporter "
                    f"{cmds['redis_exporter'][str(rate)]['per_interval']:.0f}, blackbox "
                    f"{cmds['blackbox'][str(rate)]['per_interval']:.0f} per node per 5 s"
                )
        results["commands"] = cmds

        # 2d. the rest of the long run
        remaining = args.duration - (time.monotonic() - driver.started_at)
        if remaining > 0:
            log(f"waiting {remaining:.0f} s for the end of the long run")
        wait_until(
            "RSS after the long run",
            lambda: bool(driver.rss_after),
            max(0.0, remaining) + 2 * INTERVAL + 30,
            interval=0.5,
        )
        results["rss_after"] = driver.rss_after
        results["rss_after_elapsed_s"] = round(driver.rss_elapsed, 1)
        results["ping"] = {
            "reported_p50": median(driver.rtt_ms),
            "reported_samples": len(driver.rtt_ms),
            "histogram_mean": rtt_histogram_mean_ms(dw),
            "floor": median(floors),
            "async_single": single,
            "async_concurrent": concurrent,
            "cold": cold,
        }
        results["driver"] = {"ticks": driver.ticks, "errors": driver.errors[:5]}
        smaps = dict(driver.smaps_after)
        metrics_text = dw.http.text("/metrics")
        driver.stop()
        for exporter in (dw, re_, bb):
            exporter.stop()

        # -- 3. where depwatch's memory and time go --------------------------------
        # best effort: a failed diagnostic must not lose the measurements above
        try:
            results["diagnostics"] = diagnose(
                rig, smaps=smaps, metrics_text=metrics_text, window=args.window
            )
        except (BenchError, OSError, subprocess.SubprocessError, ValueError) as exc:
            log(f"diagnostics failed: {type(exc).__name__}: {str(exc)[:300]}")
            results["diagnostics"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

    elapsed = time.monotonic() - began
    duration_label = f"{args.duration:.0f} s"
    rows = build_rows(results, duration_label)
    table = render_table(rows)
    print()
    print(
        f"depwatch vs prometheus-redis-exporter 1.45 + blackbox_exporter 0.23 — mode {mode}, "
        f"long run {args.duration:.0f} s (RSS read at {results['rss_after_elapsed_s']} s), "
        f"{args.repeats} repeats, total {elapsed / 60:.1f} min"
    )
    print(table)
    print()
    print("diagnostics:", json.dumps(results["diagnostics"], indent=1))
    met = [r for r in rows if r.met is not None]
    print(
        f"\ntargets met: {sum(1 for r in met if r.met)}/{len(met)}"
        + "".join(f"\n  missed: {r.metric}" for r in met if not r.met)
    )
    document = {
        "command": "python bench/compare.py" + (" --quick" if args.quick else ""),
        "mode": mode,
        "duration_s": args.duration,
        "repeats": args.repeats,
        "elapsed_s": round(elapsed, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(r).items()}
            for r in rows
        ],
        "diagnostics": results["diagnostics"],
        "notes": {
            "depwatch_otlp_probe_series": results["depwatch_otlp_probe_series"],
            "rss_after_elapsed_s": results["rss_after_elapsed_s"],
            "metrics_body_bytes": results["metrics_body_bytes"],
            "driver": results["driver"],
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1, default=str) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("compare.py: interrupted; everything it started has been stopped", file=sys.stderr)
        sys.exit(130)
