"""/healthz fails only when the probe loop itself stalls, never on a dependency outage.

SPEC §3: 200 while a cycle has finished within 3 x interval + the per-target deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.depwatch_harness import Harness, fast_env, running_depwatch, value
from support.otlp_receivers import Receivers
from support.redis_servers import RedisCluster

import exporter.scheduler as scheduler_module
from exporter.app import create_app
from exporter.config import load_settings
from exporter.logs import get_logger
from exporter.model import ClusterNode, ClusterTopology, NodeInfo
from exporter.scheduler import CycleParts, Scheduler

pytestmark = pytest.mark.asyncio


class InstantNode:
    """A healthy fake node: no network, so only the injected stall can slow a cycle."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def ping(self) -> float:
        return 0.0001

    async def info(self) -> NodeInfo:
        return NodeInfo(connected_clients=1, maxclients=10, rejected_connections=0)


class Stall:
    """A cycle part that hangs (ignoring nothing: it is simply never done) while engaged."""

    def __init__(self) -> None:
        self.engaged = False
        self.release = asyncio.Event()

    async def __call__(self, _topology: ClusterTopology | None) -> dict[str, object]:
        if self.engaged:
            await self.release.wait()
        return {}


@asynccontextmanager
async def stallable_depwatch(stall: Stall) -> AsyncIterator[tuple[Scheduler, TestClient]]:
    settings = load_settings({"REDIS_ADDRESS": "10.255.255.1:6379",
                              "DEPWATCH_PROBE_INTERVAL": "200ms",
                              "DEPWATCH_HEALTH_CHECK_TIMEOUT": "100ms",
                              "DEPWATCH_HEALTH_CHECK_ATTEMPTS": "1"})  # fmt: skip
    scheduler = Scheduler(settings, log=get_logger(), node_probe_factory=InstantNode,
                          parts=CycleParts(parts=[stall]))  # fmt: skip
    client = TestClient(TestServer(create_app(settings, scheduler=scheduler), host="127.0.0.1"))
    await client.start_server()
    try:
        yield scheduler, client
    finally:
        stall.release.set()
        await client.close()


async def test_healthz_503_only_after_3_intervals_plus_deadline_of_stall() -> None:
    stall = Stall()
    async with stallable_depwatch(stall) as (scheduler, client):
        assert scheduler.stall_after == pytest.approx(3 * 0.2 + 0.1)
        await asyncio.wait_for(scheduler.first_cycle_done.wait(), 5)
        await asyncio.sleep(0.5)
        assert (await client.get("/healthz")).status == 200
        cycles_before = scheduler.snapshot.cycles
        stall.engaged = True
        # the cycle that started after this moment hangs; the last one finished before it
        await asyncio.sleep(0.3)
        last_done = scheduler.last_cycle_monotonic
        assert last_done is not None
        first_503: float | None = None
        while time.monotonic() - last_done < scheduler.stall_after + 2:
            status = (await client.get("/healthz")).status
            now = time.monotonic()
            if status == 503:
                first_503 = now
                break
            await asyncio.sleep(0.02)
        assert first_503 is not None, "/healthz never failed while the loop was stalled"
        stalled_for = first_503 - last_done
        assert stalled_for >= scheduler.stall_after - 0.05, stalled_for
        assert stalled_for <= scheduler.stall_after + 0.5, stalled_for
        assert (await client.get("/readyz")).status == 200  # readiness is not liveness
        assert (await client.get("/metrics")).status == 200  # still serving the last cycle
        stall.engaged = False
        stall.release.set()
        deadline = time.monotonic() + 3
        while (await client.get("/healthz")).status != 200:
            assert time.monotonic() < deadline, "/healthz did not recover after the stall"
            await asyncio.sleep(0.05)
        assert scheduler.snapshot.cycles > cycles_before


async def _healthz_during(dw: Harness, seconds: float) -> list[int]:
    statuses: list[int] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        statuses.append((await dw.client.get("/healthz")).status)
        statuses.append((await dw.client.get("/readyz")).status)
        await asyncio.sleep(0.1)
    return statuses


async def test_outage_refused_and_hanging_targets_keep_healthz_200(receivers: Receivers) -> None:
    silent = await receivers.silent()
    silent_http = await receivers.silent()
    refused = receivers.closed()
    # every target down: one refuses, one hangs; the collector hangs on both ports
    env = fast_env(REDIS_ADDRESS=f"127.0.0.1:{refused},127.0.0.1:{silent.port}",
                   OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{silent.port}",
                   DEPWATCH_OTLP_GRPC_PORT=str(silent.port),
                   DEPWATCH_OTLP_HTTP_PORT=str(silent_http.port))  # fmt: skip
    async with running_depwatch(env) as dw:
        stall_after = dw.runtime.scheduler.stall_after
        m = await dw.wait_metrics(
            lambda m: value(m, "redis_health_check_up", node=f"127.0.0.1:{silent.port}") == 0
            and value(m, "redis_health_check_up", node=f"127.0.0.1:{refused}") == 0, within=10)
        statuses = await _healthz_during(dw, 2 * stall_after)
        m = await dw.metrics()
    assert set(statuses) == {200}, statuses
    assert (value(m, "redis_health_check_failed_total", node=f"127.0.0.1:{silent.port}",
                  reason="timeout") or 0) >= 1  # fmt: skip


async def test_whole_cluster_hanging_keeps_healthz_200(
        redis_cluster_factory: Callable[..., RedisCluster]) -> None:
    """Interval shorter than the timeouts: topology refreshes during the outage visit every
    seed and known node, and must not stretch a cycle past the /healthz threshold."""
    cluster = await asyncio.to_thread(redis_cluster_factory, primaries=3,
                                      replicas_per_primary=0)  # fmt: skip
    # stall threshold 3 x 0.5 + 1.7 = 3.2 s; a refresh visiting 3 hanging nodes, 0.8 s
    # each, plus the checks' 1.7 s deadline would take 4.2 s
    env = fast_env(REDIS_ADDRESS=",".join(cluster.addresses), REDIS_CLUSTER_MODE="true",
                   DEPWATCH_PROBE_INTERVAL="500ms", DEPWATCH_HEALTH_CHECK_TIMEOUT="800ms",
                   DEPWATCH_HEALTH_CHECK_ATTEMPTS="2")  # fmt: skip
    async with running_depwatch(env) as dw:
        stall_after = dw.runtime.scheduler.stall_after
        await dw.wait_metrics(lambda m: all(value(m, "redis_health_check_up", node=n) == 1
                                            for n in cluster.addresses), within=15)  # fmt: skip
        for node in cluster.nodes:
            node.pause()
        try:
            statuses = await _healthz_during(dw, 1.5 * stall_after + 1)
        finally:
            for node in cluster.nodes:
                node.resume()
        m = await dw.wait_metrics(lambda m: all(value(m, "redis_health_check_up", node=n) == 1
                                                for n in cluster.addresses), within=10)  # fmt: skip
        assert value(m, "redis_cluster_state_ok") == 1
    assert set(statuses) == {200}, statuses


async def test_slow_topology_refresh_never_stretches_a_cycle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh slower than a cycle carries on in the background (one at a time) and
    its topology is used by the first cycle after it ends; close() cancels it."""
    release = asyncio.Event()
    calls: list[float] = []

    async def discover(settings, *, credentials, previous, wall_clock, log=None):  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        if len(calls) >= 2:
            await release.wait()
        nodes = ["10.0.0.1:6379"] if len(calls) == 1 else ["10.0.0.1:6379", "10.0.0.2:6379"]
        return ClusterTopology(True, tuple(ClusterNode(a) for a in nodes), state_ok=True,
                               slots_ok=16384, discovered_at=wall_clock())  # fmt: skip

    monkeypatch.setattr(scheduler_module, "discover", discover)
    settings = load_settings({"REDIS_ADDRESS": "10.0.0.1:6379", "REDIS_CLUSTER_MODE": "true",
                              "DEPWATCH_PROBE_INTERVAL": "200ms",
                              "DEPWATCH_HEALTH_CHECK_TIMEOUT": "100ms",
                              "DEPWATCH_HEALTH_CHECK_ATTEMPTS": "1",
                              "DEPWATCH_TOPOLOGY_REFRESH_INTERVAL": "1ms"})  # fmt: skip
    scheduler = Scheduler(settings, log=get_logger(), node_probe_factory=InstantNode)
    try:
        first = await scheduler.run_cycle()
        assert set(first.nodes) == {"10.0.0.1:6379"}
        for _ in range(3):  # the second refresh hangs: cycles go on with the old topology
            await asyncio.sleep(0.005)  # the topology is stale (1 ms refresh interval)
            started = time.monotonic()
            snapshot = await asyncio.wait_for(scheduler.run_cycle(), 5)
            took = time.monotonic() - started
            assert took < min(0.1, 0.2) + settings.target_deadline + 0.25, took
            assert set(snapshot.nodes) == {"10.0.0.1:6379"}
        assert len(calls) == 2, "a second refresh started while one was in flight"
        release.set()
        await asyncio.sleep(0)
        snapshot = await scheduler.run_cycle()
        assert set(snapshot.nodes) == {"10.0.0.1:6379", "10.0.0.2:6379"}
        assert snapshot.nodes["10.0.0.2:6379"].up is True
        release.clear()
        await asyncio.sleep(0.01)  # the topology is stale again (1 ms refresh interval)
        await scheduler.run_cycle()  # starts another refresh, which hangs
        assert len(calls) == 3
    finally:
        await scheduler.close()
    pending = [t for t in asyncio.all_tasks() if t.get_name() == "depwatch-topology-refresh"]
    assert pending == [], pending
