"""Scheduler, snapshot folding, transition logs and HTTP health, with fakes (no network)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from exporter.app import create_app
from exporter.config import load_settings
from exporter.logs import get_logger
from exporter.model import NodeInfo, Reason
from exporter.scheduler import Clock, Scheduler


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)

    def clock(self) -> Clock:
        return Clock(wall=self.wall, monotonic=self.monotonic, sleep=self.sleep)


class ScriptedProbe:
    """A node whose PING outcomes follow a script (last outcome repeats)."""

    def __init__(self, address: str, script: list[object]) -> None:
        self.address = address
        self.script = script
        self.pings = 0

    async def ping(self) -> float:
        outcome = self.script[min(self.pings, len(self.script) - 1)]
        self.pings += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return 0.001

    async def info(self) -> NodeInfo:
        return NodeInfo(connected_clients=3, maxclients=100, rejected_connections=0)

    async def close(self) -> None:
        pass


def make_scheduler(script: list[object], fake: FakeTime, **env: str) -> Scheduler:
    settings = load_settings({"REDIS_ADDRESS": "10.0.0.1:6379", **env})
    probes: dict[str, ScriptedProbe] = {}

    def factory(address: str) -> ScriptedProbe:
        probes[address] = ScriptedProbe(address, script)
        return probes[address]

    scheduler = Scheduler(settings, log=get_logger(), clock=fake.clock(),
                          node_probe_factory=factory)  # fmt: skip
    scheduler.probes_for_test = probes  # type: ignore[attr-defined]
    return scheduler


@pytest.mark.asyncio
async def test_counters_accumulate_across_cycles() -> None:
    fake = FakeTime()
    s = make_scheduler([ConnectionResetError(), 0.001], fake)
    await s.run_cycle()
    snap = await s.run_cycle()
    node = snap.nodes["10.0.0.1:6379"]
    assert node.checks_total == 2 and node.up is True
    assert node.attempt_failures_total == {Reason.CONNECTION_RESET: 1}
    assert dict(node.failed_total) == {}
    assert node.duration.count == 2 and snap.cycles == 2


@pytest.mark.asyncio
async def test_down_logged_once_then_rate_limited_then_recovery() -> None:
    fake = FakeTime()
    s = make_scheduler([ConnectionRefusedError()], fake)
    with capture_logs() as logs:
        for _ in range(5):  # 5 cycles, ~1 s apart on the fake clock (backoffs)
            await s.run_cycle()
        fake.now += 61
        await s.run_cycle()
        s.probes_for_test["10.0.0.1:6379"].script = [0.001]  # type: ignore[attr-defined]
        await s.run_cycle()
    failures = [e for e in logs if e["event"] == "Redis health check failed"]
    assert len(failures) == 2  # first failure, then once more after a minute
    assert failures[0]["reason"] == "connection_refused"
    assert failures[0]["node"] == "10.0.0.1:6379"
    info_and_up = [e["event"] for e in logs if e["log_level"] != "debug"]
    assert info_and_up[-1] == "Redis health check recovered"


@pytest.mark.asyncio
async def test_healthz_fails_only_when_loop_stalls_readyz_after_first_cycle() -> None:
    fake = FakeTime()
    s = make_scheduler([ConnectionRefusedError()], fake, DEPWATCH_PROBE_INTERVAL="5s")
    app = create_app(s.settings, scheduler=s, run_loop=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        await s.run_cycle()  # the dependency is down: neither endpoint cares
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/healthz")).status == 200
        fake.now += s.stall_after + 1  # an injected stall: no cycle for too long
        assert (await client.get("/healthz")).status == 503
        assert (await client.get("/readyz")).status == 200
        await s.run_cycle()
        assert (await client.get("/healthz")).status == 200
        landing = await (await client.get("/")).text()
        assert "/metrics" in landing and "/status" in landing


def test_stall_threshold_matches_spec() -> None:
    s = make_scheduler([0.001], FakeTime())
    # 3 x interval + attempts x timeout + backoffs
    assert s.stall_after == pytest.approx(3 * 5 + 3 * 2 + 2 * 0.5)


@pytest.mark.asyncio
async def test_hung_probe_bounded_by_target_deadline() -> None:
    class Hung(ScriptedProbe):
        async def ping(self) -> float:
            await asyncio.sleep(3600)
            return 0.0

    settings = load_settings({"REDIS_ADDRESS": "10.0.0.1:6379",
                              "DEPWATCH_HEALTH_CHECK_TIMEOUT": "50ms",
                              "DEPWATCH_HEALTH_CHECK_BACKOFF": "10ms"})  # fmt: skip
    s = Scheduler(settings, log=get_logger(), node_probe_factory=lambda a: Hung(a, []))
    loop = asyncio.get_running_loop()
    started = loop.time()
    snap = await s.run_cycle()
    assert loop.time() - started < settings.target_deadline + 0.5
    node = snap.nodes["10.0.0.1:6379"]
    assert node.up is False and node.failed_total == {Reason.TIMEOUT: 1}


@pytest.mark.asyncio
async def test_metrics_cached_per_cycle_gzip_and_openmetrics() -> None:
    import gzip

    fake = FakeTime()
    s = make_scheduler([0.001], fake)
    await s.run_cycle()
    app = create_app(s.settings, scheduler=s, run_loop=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        first = await (await client.get("/metrics")).read()
        assert b"redis_health_checks_total" in first
        again = await (await client.get("/metrics")).read()
        assert again == first  # same snapshot, same bytes (process_* included)
        resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                                auto_decompress=False)  # fmt: skip
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await resp.read()) == first
        om = await client.get("/metrics", headers={
            "Accept": "application/openmetrics-text; version=1.0.0"})  # fmt: skip
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await om.text()).endswith("# EOF\n")
        await s.run_cycle()
        after = await (await client.get("/metrics")).read()
        assert after != first
        only = await (await client.get("/metrics?name[]=redis_health_check_up")).text()
        assert "redis_health_check_up{" in only and "redis_health_checks_total" not in only
