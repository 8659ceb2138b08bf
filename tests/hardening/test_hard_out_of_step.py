"""A command that timed out never leaves its connection out of step (tier 3).

A real redis-server behind a proxy that holds every reply 100 ms while the attempt
timeout is 50 ms: every attempt times out and its reply arrives late. Then the delay
flickers around the timeout (some PINGs make it, some INFOs do not), then it is
removed. If a connection were reused after a timeout, a late reply would be read as
the next command's: a PING reading INFO's bulk string (a ``protocol`` failure) or an
INFO reading ``PONG`` (no ``connected_clients``). The recording probe below sees each
real reply; the proxy's accepted connections show each timeout discarded its
connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.depwatch_harness import parse_metrics, value
from support.redis_servers import RedisServer, ResetProxy

from exporter.app import create_app
from exporter.config import Settings, load_settings
from exporter.logs import get_logger
from exporter.model import NodeInfo
from exporter.probes.redis import RedisNodeProbe
from exporter.scheduler import Scheduler

pytestmark = pytest.mark.asyncio


@dataclass
class Journal:
    ping_ok: int = 0
    ping_failed: int = 0
    info_ok: int = 0
    info_failed: int = 0
    info_without_clients: int = 0
    failures: list[str] = field(default_factory=list)


class RecordingProbe:
    """The real probe, with what each command really returned written down."""

    def __init__(self, address: str, settings: Settings, journal: Journal) -> None:
        self.address = address
        self._inner = RedisNodeProbe(address, settings, credentials=None)
        self._journal = journal

    async def ping(self) -> float:
        try:
            rtt = await self._inner.ping()
        except BaseException as exc:
            self._journal.ping_failed += 1
            self._journal.failures.append(f"ping {type(exc).__name__}")
            raise
        self._journal.ping_ok += 1
        return rtt

    async def info(self) -> NodeInfo:
        try:
            info = await self._inner.info()
        except BaseException as exc:
            self._journal.info_failed += 1
            self._journal.failures.append(f"info {type(exc).__name__}")
            raise
        self._journal.info_ok += 1
        if info.connected_clients is None or info.maxclients is None:
            self._journal.info_without_clients += 1
        return info

    async def discard(self) -> None:
        await self._inner.discard()

    async def close(self) -> None:
        await self._inner.close()


async def _flicker(proxy: ResetProxy, seconds: float) -> None:
    """Delay switching between just under and well over the timeout."""
    until = time.monotonic() + seconds
    delays = [0.02, 0.1, 0.04, 0.06, 0.0, 0.1]
    step = 0
    while time.monotonic() < until:
        proxy.delay(delays[step % len(delays)])
        step += 1
        await asyncio.sleep(0.035)


async def test_late_replies_never_answer_the_next_command(
        redis_standalone: RedisServer,
        reset_proxy_factory: Callable[[str, int], Awaitable[ResetProxy]]) -> None:
    proxy = await reset_proxy_factory(redis_standalone.host, redis_standalone.port)
    node = proxy.address
    settings = load_settings({"REDIS_ADDRESS": node, "DEPWATCH_PROBE_INTERVAL": "100ms",
                              "DEPWATCH_HEALTH_CHECK_TIMEOUT": "50ms",
                              "DEPWATCH_HEALTH_CHECK_ATTEMPTS": "2",
                              "DEPWATCH_HEALTH_CHECK_BACKOFF": "10ms"})  # fmt: skip
    journal = Journal()
    scheduler = Scheduler(settings, log=get_logger(),
                          node_probe_factory=lambda a: RecordingProbe(a, settings, journal))
    client = TestClient(TestServer(create_app(settings, scheduler=scheduler), host="127.0.0.1"))
    await client.start_server()
    try:
        # 1. every reply 100 ms late with a 50 ms timeout
        proxy.delay(0.1)
        await asyncio.sleep(2.0)
        slow = (journal.ping_ok, journal.ping_failed, proxy.connections_accepted)
        # 2. flickering around the timeout
        await _flicker(proxy, 3.0)
        # 3. the delay removed: every check must pass, with a real INFO each time
        proxy.passthrough()
        await asyncio.sleep(0.3)  # let the cycle in flight finish
        clean_from = (journal.ping_ok, journal.ping_failed, journal.info_ok,
                      journal.info_failed, journal.info_without_clients)  # fmt: skip
        checks_from = scheduler.snapshot.nodes[node].checks_total
        await asyncio.sleep(2.0)
        metrics = parse_metrics(await (await client.get("/metrics")).text())
        status = await (await client.get("/status")).json()
    finally:
        await client.close()
        await scheduler.close()

    assert slow[0] == 0, "a PING beat a 100 ms delay with a 50 ms timeout"
    assert slow[1] >= 10
    # one connection per timed-out attempt (+1 for the first): none was reused
    assert slow[2] >= slow[1], slow
    assert proxy.connections_accepted >= journal.ping_failed + journal.info_failed
    # after the delay was removed: clean checks only, each with a full INFO
    assert journal.ping_failed == clean_from[1], journal.failures[-10:]
    assert journal.info_failed == clean_from[3], journal.failures[-10:]
    assert journal.ping_ok - clean_from[0] >= 10
    assert journal.info_ok - clean_from[2] == journal.ping_ok - clean_from[0]
    assert scheduler.snapshot.nodes[node].checks_total - checks_from >= 10
    # over the whole run: never a reply of the wrong command
    assert journal.info_without_clients == 0
    for reason in ("protocol", "other"):
        assert (value(metrics, "redis_health_check_attempt_failures_total", node=node,
                      reason=reason) or 0) == 0, reason  # fmt: skip
    assert (value(metrics, "redis_health_check_attempt_failures_total", node=node,
                  reason="timeout") or 0) >= 10  # fmt: skip
    assert value(metrics, "redis_health_check_up", node=node) == 1
    (entry,) = status["redis"]["nodes"]
    assert entry["up"] is True
    assert 1 <= entry["connected_clients"] < 50, entry
    assert entry["maxclients"] == 10000
    # and nothing of depwatch's is left connected to the server after close
    with redis_standalone.client() as admin:
        deadline = time.monotonic() + 3
        while any(c.get("name") == "depwatch" for c in admin.client_list()):
            assert time.monotonic() < deadline, admin.client_list()
            await asyncio.sleep(0.05)
