"""A health check: up to ATTEMPTS attempts, each bounded, BACKOFF between.

Pure control flow over an injected probe, sleep and clock, so it is tested with fakes.
Authentication failures are never retried: a wrong password would otherwise AUTH
ATTEMPTS times per check (and redis-py's AuthenticationError is a ConnectionError
subclass, so a generic retry-on-ConnectionError helper would retry it).

The first attempt sends INFO and then PING on the same connection, under one
deadline. A PING sent once per interval to an idle prober and an idle server
measures both waking up (about 0.1 ms on a loopback VM, more than the round trip
itself); sent right after INFO's reply it measures the round trip an application
with a busy pool sees. INFO is still at most one command per check: a later
attempt is a PING alone, and INFO is read after it only if the first attempt did
not get it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.exceptions import ResponseError

from exporter.classify import classify_redis_error, describe_error
from exporter.model import NodeCheck, NodeInfo, Reason

__all__ = ["CheckPolicy", "Gate", "NodeProbe", "PingBarrier", "run_check"]

_NOT_RETRIED = frozenset({Reason.AUTH})
_TOPOLOGY_HINTS = ("MOVED", "ASK", "CLUSTERDOWN")


class NodeProbe(Protocol):
    address: str

    async def ping(self) -> float: ...
    async def info(self) -> NodeInfo: ...


class CheckPolicy(Protocol):
    health_check_attempts: int
    health_check_timeout: float
    health_check_backoff: float


class Gate(Protocol):
    """Told when a check's first attempt ended; waited on before its INFO."""

    def arrive(self) -> None: ...
    async def wait(self) -> None: ...


class PingBarrier:
    """Lets every node's first PING finish before the cycle's other work starts.

    All probes share one event loop: a PING whose reply arrives while the loop parses
    another node's INFO or builds a gRPC channel would report that CPU time as network
    latency. The OTLP probes, and an INFO that a first attempt did not get, wait for
    every first attempt (at most ``cap`` seconds, so a hanging node delays nothing for
    long).
    """

    def __init__(self, parties: int, *, cap: float) -> None:
        self._pending = parties
        self._cap = cap
        self._event = asyncio.Event()
        if parties <= 0:
            self._event.set()

    def arrive(self) -> None:
        self._pending -= 1
        if self._pending <= 0:
            self._event.set()

    async def wait(self) -> None:
        try:
            async with asyncio.timeout(self._cap):
                await self._event.wait()
        except TimeoutError:
            pass


async def run_check(
    probe: NodeProbe,
    policy: CheckPolicy,
    *,
    wall_clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    secrets: tuple[str, ...] = (),
    with_info: bool = True,
    barrier: Gate | None = None,
) -> NodeCheck:
    """Run one check against one node; never raises for a target failure."""
    failures: list[Reason] = []
    error: str | None = None
    wants_refresh = False
    info: NodeInfo | None = None
    info_pending = with_info
    for attempt in range(1, policy.health_check_attempts + 1):
        if attempt > 1:
            await sleep(policy.health_check_backoff)
        try:
            async with asyncio.timeout(policy.health_check_timeout):
                if attempt == 1 and info_pending:
                    info = await _info_before_ping(probe)
                    info_pending = False  # not reached when the connection failed
                rtt = await probe.ping()
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            if barrier is not None and attempt == 1:
                barrier.arrive()
            reason = classify_redis_error(exc)
            failures.append(reason)
            error = describe_error(exc, secrets=secrets)
            wants_refresh = wants_refresh or reason is Reason.CLUSTER_DOWN or any(
                hint in str(exc) for hint in _TOPOLOGY_HINTS
            )
            if reason in _NOT_RETRIED:
                break
            continue
        if barrier is not None and attempt == 1:
            barrier.arrive()
        if info_pending:
            if barrier is not None:
                await barrier.wait()
            info = await _read_info(probe, policy)
        return NodeCheck(
            node=probe.address, ok=True, attempts=attempt, attempt_failures=tuple(failures),
            rtt_seconds=rtt, error=error, finished_at=wall_clock(), info=info,
            wants_topology_refresh=wants_refresh,
        )  # fmt: skip
    return NodeCheck(
        node=probe.address, ok=False, attempts=len(failures), attempt_failures=tuple(failures),
        error=error, finished_at=wall_clock(), wants_topology_refresh=True,
    )  # fmt: skip


async def _info_before_ping(probe: NodeProbe) -> NodeInfo | None:
    """The first attempt's INFO. The server refusing INFO (an error reply, e.g. an ACL
    without it) leaves the check to PING; a connection that fails fails the attempt,
    so a reset or a hang is counted whichever command it hit."""
    try:
        return await probe.info()
    except ResponseError:
        return None


async def _read_info(probe: NodeProbe, policy: CheckPolicy) -> NodeInfo | None:
    """INFO after a successful PING; its failure does not fail the check."""
    try:
        async with asyncio.timeout(policy.health_check_timeout):
            return await probe.info()
    except Exception:  # noqa: BLE001 - INFO is best effort; the connection was discarded
        return None
