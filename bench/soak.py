"""Soak: depwatch under toggled faults for a long time; RSS, fds, threads, tasks sampled.

``python bench/soak.py [--minutes 30] [--fault-every 30]`` brings up, on 127.0.0.1:

- two standalone ``redis-server`` nodes (``tests/support/redis_servers.py``): node A
  dialled directly (faults: SIGSTOP/SIGCONT, SIGKILL + restart), node B behind a
  ``ThreadedResetProxy`` (faults: RST on every request, black hole, 2 s latency);
- an OTLP/gRPC and an OTLP/HTTP receiver (``tests/support/otlp_receivers.py``) on their
  own event-loop thread, the HTTP one behind a second proxy (fault: black hole);
- ``depwatch serve`` as a subprocess (this file's ``--child`` mode: exactly
  ``exporter.cli.serve`` with the settings from the environment, plus a task that
  writes ``len(asyncio.all_tasks())`` to a file, the one figure ``/proc`` cannot give).

Faults are toggled every ``--fault-every`` seconds: one fault on for a period, then a
healthy period, then the next fault, round robin. Every ``--sample-every`` seconds the
soak records depwatch's RSS (``VmRSS``), open fds (``/proc/<pid>/fd``), threads, asyncio
tasks, the /metrics latency and the /healthz status. The table shows the sample at
the end of each period.

Verdict (exit 0 / 1): over the samples taken in healthy periods after the warm-up
(the first ``--warmup`` fraction of the run, at least one fault round), RSS growth
(median of the last healthy period against the first) below ``--max-rss-growth-mib``;
fds, threads and tasks back to their first post-warm-up figures (within a small
slack) in every healthy period; /healthz 200 and /metrics fast throughout; and at the
end, with faults cleared, every target up again within 3 probe intervals.

``run_soak(...)`` is what ``tests/hardening/test_hard_soak.py`` calls (2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]

#: a healthy period's fds/threads/tasks may exceed the baseline by this much
FD_SLACK, THREAD_SLACK, TASK_SLACK = 6, 2, 4
METRICS_SLOW = 1.0


# --------------------------------------------------------------------------- child


async def _child_main(tasks_out: TextIO, every: float) -> int:
    from exporter.cli import serve
    from exporter.config import load_settings
    from exporter.logs import configure_logging

    settings = load_settings(os.environ)
    configure_logging(settings.log_level, settings.log_format)

    async def sample() -> None:
        while True:
            tasks_out.write(f"{time.time():.3f} {len(asyncio.all_tasks())}\n")
            tasks_out.flush()
            await asyncio.sleep(every)

    sampler = asyncio.create_task(sample(), name="soak-task-sampler")
    try:
        return await serve(settings)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler


# --------------------------------------------------------------------------- targets


class _LoopThread:
    """An event loop on a daemon thread, for the OTLP receivers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="soak-otlp",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass
class Fault:
    name: str
    apply: Callable[[], None]
    revert: Callable[[], None]


class Targets:
    """Redis nodes, proxies and OTLP receivers; ``faults`` switch them."""

    def __init__(self, workdir: Path) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from support.otlp_receivers import GrpcReceiver, HttpReceiver
        from support.redis_servers import RedisServer, ThreadedResetProxy

        self._cleanup: list[Callable[[], None]] = []
        self.node_a = RedisServer(workdir / "node-a")
        self.node_a.start()
        self._cleanup.append(self.node_a.stop)
        node_b = RedisServer(workdir / "node-b")
        node_b.start()
        self._cleanup.append(node_b.stop)
        self.proxy_b = ThreadedResetProxy(node_b.host, node_b.port)
        self.proxy_b.start()
        self._cleanup.append(self.proxy_b.stop)

        self._otlp = _LoopThread()
        self._cleanup.append(self._otlp.stop)
        self.grpc = GrpcReceiver()
        self.http = HttpReceiver()
        self.grpc_port = self._otlp.run(self.grpc.start())
        http_port = self._otlp.run(self.http.start())
        self._cleanup.append(lambda: self._otlp.run(self.grpc.stop()))
        self._cleanup.append(lambda: self._otlp.run(self.http.stop()))
        self.proxy_http = ThreadedResetProxy("127.0.0.1", http_port)
        self.proxy_http.start()
        self._cleanup.append(self.proxy_http.stop)

    @property
    def nodes(self) -> list[str]:
        return [self.node_a.address, self.proxy_b.address]

    def env(self) -> dict[str, str]:
        return {
            "REDIS_ADDRESS": ",".join(self.nodes),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.grpc_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "DEPWATCH_OTLP_GRPC_PORT": str(self.grpc_port),
            "DEPWATCH_OTLP_HTTP_PORT": str(self.proxy_http.port),
        }

    def faults(self) -> list[Fault]:
        a, b, h = self.node_a, self.proxy_b, self.proxy_http

        def restart_a() -> None:
            if not a.running:
                a.start()

        return [
            Fault("pause node A", a.pause, a.resume),
            Fault("RST on node B", lambda: b.reset_all(True), b.passthrough),
            Fault("black-hole node B", lambda: b.blackhole(True), b.passthrough),
            Fault("kill node A", a.kill, restart_a),
            Fault("2 s latency on B", lambda: b.delay(2.0), b.passthrough),
            Fault("black-hole OTLP/HTTP", lambda: h.blackhole(True), h.passthrough),
        ]

    def close(self) -> None:
        for step in reversed(self._cleanup):
            with contextlib.suppress(Exception):
                step()


# --------------------------------------------------------------------------- sampling


@dataclass
class Sample:
    at: float  # seconds since the soak started
    period: int
    phase: str  # "healthy" or the fault's name
    rss_kib: int
    fds: int
    threads: int
    tasks: int | None
    metrics_seconds: float
    healthz: int


def _proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _last_tasks(path: Path) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    return int(lines[-1].split()[1]) if lines else None


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""
    except OSError:
        return 0, b""


def _sample(pid: int, port: int, tasks_file: Path, *, at: float, period: int,
            phase: str) -> Sample:  # fmt: skip
    status = _proc_status(pid)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    started = time.monotonic()
    code, _ = _get(port, "/metrics")
    took = time.monotonic() - started
    assert code == 200, f"/metrics answered {code}"
    healthz, _ = _get(port, "/healthz")
    return Sample(at=round(at, 1), period=period, phase=phase,
                  rss_kib=int(status["VmRSS"].split()[0]), fds=fds,
                  threads=int(status["Threads"]), tasks=_last_tasks(tasks_file),
                  metrics_seconds=round(took, 4), healthz=healthz)  # fmt: skip


# --------------------------------------------------------------------------- report


@dataclass
class SoakReport:
    minutes: float
    fault_every: float
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        rows = [f"{'t(s)':>7} {'period':>6} {'phase':<22} {'RSS MiB':>8} {'fds':>4} "
                f"{'thr':>4} {'tasks':>5} {'/metrics ms':>11} {'healthz':>7}"]  # fmt: skip
        by_period: dict[int, Sample] = {}
        for s in self.samples:
            by_period[s.period] = s  # the last sample of each period
        for s in by_period.values():
            rows.append(f"{s.at:>7.1f} {s.period:>6} {s.phase:<22} {s.rss_kib / 1024:>8.2f} "
                        f"{s.fds:>4} {s.threads:>4} {s.tasks if s.tasks is not None else '-':>5} "
                        f"{s.metrics_seconds * 1000:>11.1f} {s.healthz:>7}")  # fmt: skip
        return "\n".join(rows)

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL: " + "; ".join(self.problems)
        figures = ", ".join(f"{k}={v}" for k, v in self.figures.items())
        return f"{self.table()}\n\n{figures}\nverdict: {verdict}"


def _judge(report: SoakReport, *, warmup: float, max_rss_growth_mib: float) -> None:
    samples = report.samples
    problems = report.problems
    if not samples:
        problems.append("no samples")
        return
    slow = [s for s in samples if s.metrics_seconds > METRICS_SLOW]
    if slow:
        problems.append(f"/metrics slower than {METRICS_SLOW}s {len(slow)} times")
    unhealthy = [s for s in samples if s.healthz != 200]
    if unhealthy:
        problems.append(f"/healthz not 200 in {len(unhealthy)} samples "
                        f"(first at {unhealthy[0].at}s)")  # fmt: skip
    start_at = warmup * samples[-1].at
    healthy = [s for s in samples if s.phase == "healthy" and s.at >= start_at]
    periods = sorted({s.period for s in healthy})
    if len(periods) < 2:
        problems.append("fewer than two healthy periods after the warm-up: run longer")
        return
    first = [s for s in healthy if s.period == periods[0]]
    last = [s for s in healthy if s.period == periods[-1]]
    rss_first = statistics.median(s.rss_kib for s in first) / 1024
    rss_last = statistics.median(s.rss_kib for s in last) / 1024
    growth = rss_last - rss_first
    report.figures.update(
        rss_start_mib=round(samples[0].rss_kib / 1024, 2),
        rss_after_warmup_mib=round(rss_first, 2), rss_end_mib=round(rss_last, 2),
        rss_growth_mib=round(growth, 2),
        rss_max_mib=round(max(s.rss_kib for s in samples) / 1024, 2),
        fds=f"{min(s.fds for s in samples)}..{max(s.fds for s in samples)}",
        threads=f"{min(s.threads for s in samples)}..{max(s.threads for s in samples)}",
        tasks=_span([s.tasks for s in samples]),
        metrics_ms_max=round(max(s.metrics_seconds for s in samples) * 1000, 1),
        samples=len(samples),
    )  # fmt: skip
    if growth > max_rss_growth_mib:
        problems.append(f"RSS grew {growth:.2f} MiB after warm-up (limit {max_rss_growth_mib})")
    # every healthy period returns to the first one's figures
    base = {"fds": min(s.fds for s in first), "threads": min(s.threads for s in first),
            "tasks": min((s.tasks for s in first if s.tasks is not None), default=0)}
    slack = {"fds": FD_SLACK, "threads": THREAD_SLACK, "tasks": TASK_SLACK}
    for period in periods[1:]:
        in_period = [s for s in healthy if s.period == period]
        for key in ("fds", "threads", "tasks"):
            values = [getattr(s, key) for s in in_period if getattr(s, key) is not None]
            if values and min(values) > base[key] + slack[key]:
                problems.append(f"{key} at {min(values)} in healthy period {period}, "
                                f"baseline {base[key]}")  # fmt: skip


def _span(values: list[int | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{min(known)}..{max(known)}" if known else "-"


# --------------------------------------------------------------------------- driver


def _free_port() -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from support.redis_servers import free_port

    return free_port()


def _start_depwatch(env: dict[str, str], tasks_file: Path, log_file: Path,
                    sample_every: float) -> subprocess.Popen[bytes]:  # fmt: skip
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", "--tasks-file",
             str(tasks_file), "--sample-every", str(sample_every)],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            return None
    return proc.returncode


def _all_up(port: int, nodes: list[str]) -> bool:
    code, body = _get(port, "/status")
    if code != 200:
        return False
    doc = json.loads(body)
    up = {n["node"]: n["up"] for n in doc["redis"]["nodes"]}
    probes = doc["otlp"]["probes"]
    return all(up.get(n) is True for n in nodes) and bool(probes) and all(
        p["up"] for p in probes)


def run_soak(minutes: float = 30.0, *, fault_every: float = 30.0, sample_every: float = 5.0,
             interval: str = "1s", warmup: float = 0.2, max_rss_growth_mib: float = 8.0,
             out: Callable[[str], None] = print) -> SoakReport:
    """Run the soak; returns the report (``report.ok`` is the verdict)."""
    report = SoakReport(minutes=minutes, fault_every=fault_every)
    with tempfile.TemporaryDirectory(prefix="depwatch-soak-") as tmp:
        workdir = Path(tmp)
        targets = Targets(workdir)
        proc: subprocess.Popen[bytes] | None = None
        try:
            port = _free_port()
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("REDIS_", "DEPWATCH_", "OTEL_"))}  # fmt: skip
            env.update(targets.env(), DEPWATCH_LISTEN_ADDRESS=f"127.0.0.1:{port}",
                       DEPWATCH_PROBE_INTERVAL=interval, DEPWATCH_HEALTH_CHECK_TIMEOUT="500ms",
                       DEPWATCH_HEALTH_CHECK_BACKOFF="100ms", PYTHONPATH=str(REPO))  # fmt: skip
            tasks_file, log_file = workdir / "tasks.txt", workdir / "depwatch.log"
            proc = _start_depwatch(env, tasks_file, log_file, sample_every)
            deadline = time.monotonic() + 30
            while not _all_up(port, targets.nodes):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("depwatch did not come up: "
                                       + log_file.read_text()[-2000:])  # fmt: skip
                time.sleep(0.2)
            out(f"soak: {minutes} min, faults every {fault_every}s, depwatch pid {proc.pid}")
            _drive(report, proc, port, targets, tasks_file, sample_every=sample_every, out=out)
            _final_recovery(report, port, targets, interval_seconds=_seconds(interval))
            report.figures["log_lines"] = sum(1 for _ in log_file.open("rb"))
        finally:
            code = _stop(proc) if proc is not None else None
            targets.close()
        if code != 0:
            report.problems.append(f"depwatch exited {code} on SIGTERM")
    _judge(report, warmup=warmup, max_rss_growth_mib=max_rss_growth_mib)
    out(report.summary())
    return report


def _seconds(interval: str) -> float:
    from exporter.values import parse_duration

    return parse_duration(interval)


def _drive(report: SoakReport, proc: subprocess.Popen[bytes], port: int, targets: Targets,
           tasks_file: Path, *, sample_every: float, out: Callable[[str], None]) -> None:
    faults = targets.faults()
    began = time.monotonic()
    total = report.minutes * 60
    period = -1
    active: Fault | None = None
    try:
        while (elapsed := time.monotonic() - began) < total:
            now_period = int(elapsed // report.fault_every)
            if now_period != period:
                if active is not None:
                    active.revert()
                    active = None
                period = now_period
                if period % 2 == 0:
                    active = faults[(period // 2) % len(faults)]
                    active.apply()
                out(f"  {elapsed:7.1f}s period {period}: {active.name if active else 'healthy'}")
            if proc.poll() is not None:
                report.problems.append(f"depwatch exited with {proc.returncode} mid-soak")
                return
            report.samples.append(_sample(proc.pid, port, tasks_file, at=elapsed,
                                          period=period,
                                          phase=active.name if active else "healthy"))
            time.sleep(max(0.0, sample_every - (time.monotonic() - began - elapsed)))
    finally:
        if active is not None:
            active.revert()


def _final_recovery(report: SoakReport, port: int, targets: Targets, *,
                    interval_seconds: float) -> None:  # fmt: skip
    """Faults cleared: every target up within 3 intervals (plus the deadline in flight)."""
    started = time.monotonic()
    limit = 3 * interval_seconds + 2.0
    while not _all_up(port, targets.nodes):
        if time.monotonic() - started > limit:
            report.problems.append(f"targets not all up {limit:.1f}s after the last fault")
            return
        time.sleep(0.1)
    report.figures["final_recovery_s"] = round(time.monotonic() - started, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-every", type=float, default=30.0)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--interval", default="1s", help="depwatch's probe interval")
    parser.add_argument("--max-rss-growth-mib", type=float, default=8.0)
    parser.add_argument("--json", type=Path, help="write the samples and figures here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tasks-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with open(args.tasks_file, "a", encoding="utf-8") as tasks_out:
            return asyncio.run(_child_main(tasks_out, args.sample_every))
    report = run_soak(args.minutes, fault_every=args.fault_every,
                      sample_every=args.sample_every, interval=args.interval,
                      max_rss_growth_mib=args.max_rss_growth_mib)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"figures": report.figures, "problems": report.problems,
                                         "samples": [asdict(s) for s in report.samples]},
                                        indent=1))  # fmt: skip
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
