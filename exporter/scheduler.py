"""The probe loop: one cycle every interval, every target concurrently, hard deadlines.

The scheduler owns what probes share: deadlines, attempts (via :func:`run_check`),
fan-out to each node, topology refresh, and swapping in the new snapshot whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from structlog.typing import FilteringBoundLogger

from exporter.checks import Gate, NodeProbe, PingBarrier, run_check
from exporter.config import Settings
from exporter.credentials import PasswordCredentials
from exporter.model import (
    ClusterTopology,
    CycleResult,
    NodeCheck,
    Reason,
    Snapshot,
)
from exporter.probes.redis import RedisNodeProbe
from exporter.probes.topology import discover
from exporter.snapshot import fold
from exporter.transitions import TransitionLog

__all__ = ["Clock", "CycleParts", "Scheduler"]

#: Checks start one after another while each first PING answers within STAGGER_STEP,
#: for at most STAGGER_BUDGET per cycle; then the rest start together. Alone on the
#: loop a PING measures the network, not the other nodes' replies being processed.
STAGGER_STEP = 0.02
STAGGER_BUDGET = 0.1


class _NodeGate:
    """One node's view of the cycle's PingBarrier, also telling the stagger loop."""

    def __init__(self, barrier: PingBarrier) -> None:
        self._barrier = barrier
        self.first_attempt_done = asyncio.Event()

    def arrive(self) -> None:
        self.first_attempt_done.set()
        self._barrier.arrive()

    async def wait(self) -> None:
        await self._barrier.wait()


@dataclass(frozen=True)
class Clock:
    """Injectable time: ``wall`` for timestamps, ``monotonic`` for intervals."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


#: extra work run concurrently with the Redis checks; each fills part of a CycleResult
CyclePart = Callable[[ClusterTopology | None], Awaitable[dict[str, object]]]
#: runs after every part finished, over all their fields (e.g. a mismatch that needs
#: both the OTLP probes and the socket table of the same cycle)
Combiner = Callable[[dict[str, object]], dict[str, object]]


@dataclass
class CycleParts:
    """Optional cycle parts (OTLP probes, socket table), keyed by CycleResult field."""

    #: run before any probe, so nothing of ours is connecting meanwhile (the socket table)
    first: list[CyclePart] = field(default_factory=list)
    #: run beside the Redis checks, once their first PINGs are done (OTLP probes)
    parts: list[CyclePart] = field(default_factory=list)
    combiners: list[Combiner] = field(default_factory=list)


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        *,
        log: FilteringBoundLogger,
        credentials: PasswordCredentials | None = None,
        clock: Clock | None = None,
        node_probe_factory: Callable[[str], NodeProbe] | None = None,
        parts: CycleParts | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.clock = clock or Clock()
        self._credentials = credentials
        self._factory = node_probe_factory or (
            lambda address: RedisNodeProbe(address, settings, credentials=credentials)
        )
        self._parts = parts or CycleParts()
        self._probes: dict[str, NodeProbe] = {}
        self._topology: ClusterTopology | None = None
        self._refresh_requested = True
        self._discovery: asyncio.Task[ClusterTopology] | None = None
        self._transitions = TransitionLog(log, clock=self.clock.monotonic)
        self.snapshot = Snapshot(redis_enabled=settings.redis_enabled,
                                 otlp_enabled=settings.otlp is not None)  # fmt: skip
        self.last_cycle_monotonic: float | None = None
        self.started_monotonic = self.clock.monotonic()
        self.first_cycle_done = asyncio.Event()

    # ----------------------------------------------------------------- health

    @property
    def stall_after(self) -> float:
        """/healthz fails when no cycle finished within this many seconds."""
        return 3 * self.settings.probe_interval + self.settings.target_deadline

    def alive(self) -> bool:
        reference = self.last_cycle_monotonic or self.started_monotonic
        return self.clock.monotonic() - reference <= self.stall_after

    # ----------------------------------------------------------------- cycle

    def _secrets(self) -> tuple[str, ...]:
        password = self._credentials.password() if self._credentials else None
        return (password,) if password else ()

    async def _topology_for_cycle(self) -> ClusterTopology | None:
        s = self.settings
        if not s.redis_enabled:
            return None
        now = self.clock.wall()
        stale = self._topology is None or now - self._topology.discovered_at >= s.topology_refresh
        if (self._refresh_requested or stale) and self._discovery is None:
            self._refresh_requested = False
            self._discovery = asyncio.create_task(
                discover(s, credentials=self._credentials, previous=self._topology,
                         wall_clock=self.clock.wall, log=self.log),
                name="depwatch-topology-refresh")  # fmt: skip
        if self._discovery is not None:
            # A refresh tries seeds and known nodes one after another, so while the whole
            # cluster hangs it takes (candidates x timeout). Only the first cycle waits for
            # it to end; later ones wait a bounded time and otherwise probe the previous
            # topology, the refresh carrying on for a later cycle. A cycle thus stays
            # within the /healthz threshold however many nodes hang.
            if self._topology is None:
                await asyncio.wait({self._discovery})
            else:
                await asyncio.wait({self._discovery},
                                   timeout=min(s.health_check_timeout, s.probe_interval))
            if self._discovery.done():
                done, self._discovery = self._discovery, None
                self._topology = done.result()
                await self._sync_probes(self._topology)
        return self._topology

    async def _sync_probes(self, topology: ClusterTopology) -> None:
        wanted = set(topology.addresses)
        for address in [a for a in self._probes if a not in wanted]:
            probe = self._probes.pop(address)
            close = getattr(probe, "close", None)
            if close is not None:
                await close()
        for address in topology.addresses:
            if address not in self._probes:
                self._probes[address] = self._factory(address)

    async def _check_node(self, probe: NodeProbe, barrier: Gate,
                          secrets: tuple[str, ...]) -> NodeCheck:
        deadline = self.settings.target_deadline + 0.25
        try:
            async with asyncio.timeout(deadline):
                return await run_check(probe, self.settings, wall_clock=self.clock.wall,
                                       sleep=self.clock.sleep, secrets=secrets,
                                       barrier=barrier)  # fmt: skip
        except TimeoutError:
            close = getattr(probe, "discard", None)
            if close is not None:
                await close()
            return NodeCheck(
                node=probe.address, ok=False, attempts=1, attempt_failures=(Reason.TIMEOUT,),
                error="target deadline exceeded", finished_at=self.clock.wall(),
                wants_topology_refresh=True,
            )

    def _needs_refresh(self, topology: ClusterTopology, checks: tuple[NodeCheck, ...]) -> bool:
        """MOVED/failed node, a recovery, or a role change seen in INFO."""
        roles = {n.address: n.role for n in topology.nodes}
        for check in checks:
            previous = self.snapshot.nodes.get(check.node)
            if check.wants_topology_refresh or not check.ok:
                return True
            if previous is not None and previous.up is False:
                return True
            if check.info and check.info.role and check.info.role != roles.get(check.node):
                return True
        return False

    async def run_cycle(self) -> Snapshot:
        started = self.clock.wall()
        started_mono = self.clock.monotonic()
        if self._credentials is not None:
            await self._credentials.refresh()
        topology = await self._topology_for_cycle()
        probes = [self._probes[a] for a in topology.addresses] if topology else []
        extra: dict[str, object] = {}
        for first in self._parts.first:
            extra.update(await first(topology))
        barrier = PingBarrier(len(probes), cap=min(0.25, self.settings.health_check_timeout))

        async def after_pings(part: CyclePart) -> dict[str, object]:
            await barrier.wait()
            return await part(topology)

        async with asyncio.TaskGroup() as group:
            node_tasks = []
            secrets = self._secrets()  # once per cycle: a password file is stat()ed here
            stagger_until = asyncio.get_running_loop().time() + STAGGER_BUDGET
            for probe in probes:
                gate = _NodeGate(barrier)
                node_tasks.append(group.create_task(self._check_node(probe, gate, secrets)))
                await _wait_briefly(gate.first_attempt_done, until=stagger_until)
            part_tasks = [group.create_task(after_pings(part)) for part in self._parts.parts]
        checks = tuple(t.result() for t in node_tasks)
        for task in part_tasks:
            extra.update(task.result())
        for combine in self._parts.combiners:
            extra.update(combine(extra))
        if topology is not None and topology.cluster and self._needs_refresh(topology, checks):
            self._refresh_requested = True
        cycle = CycleResult(started_at=started, finished_at=self.clock.wall(), topology=topology,
                            node_checks=checks, **extra)  # type: ignore[arg-type]
        previous = self.snapshot
        self.snapshot = fold(previous, cycle, redis_enabled=self.settings.redis_enabled,
                             otlp_enabled=self.settings.otlp is not None)  # fmt: skip
        self._transitions.record(previous, self.snapshot)
        self.last_cycle_monotonic = self.clock.monotonic()
        self.log.debug("cycle done", duration=round(self.clock.monotonic() - started_mono, 4))
        self.first_cycle_done.set()
        return self.snapshot

    async def run_forever(self) -> None:
        """Cycle at a fixed rate; an overrun starts the next cycle at once."""
        interval = self.settings.probe_interval
        while True:
            began = self.clock.monotonic()
            try:
                await self.run_cycle()
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the loop
                self.log.error("probe cycle failed", error=f"{type(exc).__name__}: {exc}"[:200])
            await self.clock.sleep(max(0.0, interval - (self.clock.monotonic() - began)))

    async def close(self) -> None:
        discovery, self._discovery = self._discovery, None
        if discovery is not None:
            discovery.cancel()
            await asyncio.gather(discovery, return_exceptions=True)
        probes, self._probes = list(self._probes.values()), {}
        for probe in probes:
            close = getattr(probe, "close", None)
            if close is not None:
                await close()


async def _wait_briefly(event: asyncio.Event, *, until: float) -> None:
    """Wait for ``event`` at most STAGGER_STEP, and never past ``until`` (loop time)."""
    left = min(STAGGER_STEP, until - asyncio.get_running_loop().time())
    if left <= 0:
        return
    try:
        async with asyncio.timeout(left):
            await event.wait()
    except TimeoutError:
        pass
