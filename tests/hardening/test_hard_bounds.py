"""Bounds under random failures: series count, label values, file descriptors, tasks.

1. Tier 3: a real redis-server behind a proxy that a seeded RNG switches between
   forwarding, resetting, black-holing and delaying, for a few hundred cycles at a
   tiny interval, plus a healthy node; /metrics sampled throughout.
2. In-process, thousands of cycles: fake nodes failing at random in every way the
   classifier knows (and some it does not), in cluster mode with a fake discovery
   whose node set changes every refresh (nodes join and leave, some refreshes slower
   than a cycle waits for them).

Series bound, per node (SPEC §4, reasons pre-created at 0):
``2 x |reasons|`` (failed and attempt-failure counters) + 1 checks + 1 up
+ 16 duration histogram (13 buckets, +Inf, _sum, _count) + 1 last success
+ 1 cluster_node_info + 3 INFO gauges + 8 pool (current, 6 socket states, max) = 51;
constants: cluster state and slots 2, pod TCP counters 4, build info 1, cycle
histogram 13 (10 buckets, +Inf, _sum, _count), last cycle 1 = 21.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from label_rules import check_labels, depwatch_series
from prometheus_client import generate_latest
from redis import exceptions as rx
from support.depwatch_harness import parse_metrics, running_depwatch, series
from support.redis_servers import RedisServer, ResetProxy

import exporter.scheduler as scheduler_module
from exporter.config import Settings, load_settings
from exporter.logs import get_logger
from exporter.metrics import build_registry
from exporter.model import ClusterNode, ClusterTopology, NodeInfo, Reason, Role
from exporter.scheduler import Clock, Scheduler

pytestmark = pytest.mark.asyncio

PER_NODE = 2 * len(Reason) + 1 + 1 + 16 + 1 + 1 + 3 + 8
CONSTANTS = 2 + 4 + 1 + 13 + 1


def series_bound(nodes: int) -> int:
    return nodes * PER_NODE + CONSTANTS


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _stable(samples: list[int], *, slack: int) -> bool:
    """After the first quarter (warm-up), the figure never rises more than ``slack``."""
    warm = samples[len(samples) // 4:]
    return max(warm) - warm[0] <= slack


# --------------------------------------------------------------------------- tier 3


async def _chaos(proxy: ResetProxy, rng: random.Random, stop: asyncio.Event) -> list[str]:
    modes: list[str] = []
    while not stop.is_set():
        proxy.passthrough()
        mode = rng.choice(["pass", "pass", "reset_all", "reset_next", "blackhole", "delay"])
        if mode == "reset_all":
            proxy.reset_all(True)
        elif mode == "reset_next":
            proxy.reset_next(rng.randint(1, 3))
        elif mode == "blackhole":
            proxy.blackhole(True)
        elif mode == "delay":
            proxy.delay(rng.choice([0.01, 0.04, 0.08]))
        modes.append(mode)
        await asyncio.sleep(rng.uniform(0.02, 0.12))
    proxy.passthrough()
    return modes


async def test_random_proxy_faults_real_redis(
        redis_standalone: RedisServer,
        reset_proxy_factory: Callable[[str, int], Awaitable[ResetProxy]]) -> None:
    proxy = await reset_proxy_factory(redis_standalone.host, redis_standalone.port)
    nodes = [proxy.address, redis_standalone.address]
    env = {"REDIS_ADDRESS": ",".join(nodes), "DEPWATCH_PROBE_INTERVAL": "20ms",
           "DEPWATCH_HEALTH_CHECK_TIMEOUT": "50ms", "DEPWATCH_HEALTH_CHECK_ATTEMPTS": "2",
           "DEPWATCH_HEALTH_CHECK_BACKOFF": "5ms"}  # fmt: skip
    stop = asyncio.Event()
    fds: list[int] = []
    tasks: list[int] = []
    counts: list[int] = []
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    async with running_depwatch(env) as dw:
        chaos = asyncio.create_task(_chaos(proxy, random.Random(7), stop))
        scheduler = dw.runtime.scheduler
        started = time.monotonic()
        try:
            while scheduler.snapshot.cycles < 300:
                assert time.monotonic() - started < 40, "cycles too slow"
                m = depwatch_series(await dw.metrics())
                check_labels(m, nodes=nodes)
                seen.update(m)
                counts.append(len(m))
                fds.append(open_fds())
                tasks.append(len(asyncio.all_tasks()))
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            modes = await chaos
        m = depwatch_series(await dw.metrics())
    failed = {dict(labels)["reason"] for labels, v in
              series(m, "redis_health_check_attempt_failures_total").items() if v}  # fmt: skip
    print(f"{scheduler.snapshot.cycles} cycles, {len(modes)} proxy switches, reasons {failed}, "
          f"series {min(counts)}..{max(counts)} (bound {series_bound(2)}), "
          f"fds {min(fds)}..{max(fds)}, tasks {min(tasks)}..{max(tasks)}")
    assert {"timeout", "connection_reset"} <= failed, failed
    assert max(counts) <= series_bound(len(nodes))
    assert len({k for k in seen if not k[0].endswith("_bucket")}) <= series_bound(len(nodes))
    assert _stable(fds, slack=6), fds
    assert _stable(tasks, slack=6), tasks


# --------------------------------------------------------------------------- fakes

POOL = [f"10.0.{i}.1:6379" for i in range(8)]


def _errors() -> list[BaseException]:
    return [
        ConnectionResetError(104, "Connection reset by peer"),
        ConnectionRefusedError(111, "Connection refused"),
        rx.TimeoutError("Timeout reading from socket"),
        rx.InvalidResponse("Protocol Error: b'?'"),
        rx.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
        rx.ResponseError("CLUSTERDOWN The cluster is down"),
        rx.ResponseError("MOVED 3999 10.0.0.9:6379"),
        rx.AuthenticationError("WRONGPASS invalid username-password pair"),
        socket.gaierror(-2, "Name or service not known"),
        ssl.SSLCertVerificationError(1, "certificate verify failed: certificate has expired"),
        rx.ConnectionError("Error 111 connecting to 10.0.0.1:6379. Connection refused."),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        RuntimeError("free text\nwith {braces} and \"quotes\" that must never be a label"),
        OSError(113, "No route to host"),
    ]


@dataclass
class Stats:
    opened: int = 0
    closed: int = 0


class ChaosNode:
    """Succeeds, fails with a random error, or hangs past the attempt timeout."""

    def __init__(self, address: str, rng: random.Random, stats: Stats) -> None:
        self.address = address
        self._rng = rng
        self._stats = stats
        stats.opened += 1

    async def _outcome(self) -> None:
        roll = self._rng.random()
        if roll < 0.5:
            return
        if roll < 0.53:
            await asyncio.sleep(1)  # cancelled by the attempt timeout
        raise self._rng.choice(_errors())

    async def ping(self) -> float:
        await self._outcome()
        return self._rng.uniform(0.0001, 0.01)

    async def info(self) -> NodeInfo:
        await self._outcome()
        return NodeInfo(connected_clients=self._rng.randint(1, 50), maxclients=10000,
                        rejected_connections=self._rng.randint(0, 5),
                        role=self._rng.choice([Role.PRIMARY, Role.REPLICA, None]))  # fmt: skip

    async def close(self) -> None:
        self._stats.closed += 1


def _fake_discover(rng: random.Random) -> Callable[..., Awaitable[ClusterTopology]]:
    async def discover(settings: Settings, *, credentials: object, previous: object,
                       wall_clock: Callable[[], float], log: object = None) -> ClusterTopology:
        if rng.random() < 0.1:
            await asyncio.sleep(0.01)  # longer than a cycle waits: finishes in the background
        chosen = sorted(rng.sample(POOL, rng.randint(1, len(POOL))))
        nodes = tuple(ClusterNode(a, node_id=f"{i:040x}", role=rng.choice(list(Role)),
                                  shard=f"{i % 3:040x}") for i, a in enumerate(chosen))  # fmt: skip
        error = rng.choice([None, None, None, Reason.TIMEOUT])
        return ClusterTopology(True, nodes, state_ok=rng.random() < 0.8,
                               slots_ok=rng.choice([16384, 0, 12000]),
                               discovered_at=wall_clock(), error_reason=error)  # fmt: skip

    return discover


async def test_thousands_of_chaotic_cycles_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20240607)
    monkeypatch.setattr(scheduler_module, "discover", _fake_discover(rng))
    settings = load_settings({"REDIS_ADDRESS": POOL[0], "REDIS_CLUSTER_MODE": "true",
                              "DEPWATCH_HEALTH_CHECK_TIMEOUT": "2ms",
                              "DEPWATCH_HEALTH_CHECK_ATTEMPTS": "2",
                              "DEPWATCH_HEALTH_CHECK_BACKOFF": "1ms",
                              "DEPWATCH_PROBE_INTERVAL": "1ms",
                              "DEPWATCH_TOPOLOGY_REFRESH_INTERVAL": "1ms"})  # fmt: skip
    stats = Stats()
    # backoffs take no time (the attempt timeouts of hanging nodes still do)
    clock = Clock(sleep=lambda _seconds: asyncio.sleep(0))
    scheduler = Scheduler(settings, log=get_logger(), clock=clock,
                          node_probe_factory=lambda a: ChaosNode(a, rng, stats))
    registry = build_registry(lambda: scheduler.snapshot)
    tasks_before = len(asyncio.all_tasks())
    fds: list[int] = []
    tasks: list[int] = []
    reasons_seen: set[str] = set()
    cycles = 3000
    try:
        for cycle in range(1, cycles + 1):
            await scheduler.run_cycle()
            if cycle % 100 == 0:
                m = depwatch_series(parse_metrics(generate_latest(registry).decode()))
                check_labels(m, nodes=POOL)
                nodes_now = {dict(labels)["node"]
                             for labels in series(m, "redis_health_checks_total")}  # fmt: skip
                assert len(m) <= series_bound(len(nodes_now))
                assert nodes_now == set(scheduler.snapshot.nodes)
                reasons_seen |= {dict(labels)["reason"] for labels, v in
                                 series(m, "redis_health_check_attempt_failures_total").items()
                                 if v}  # fmt: skip
                fds.append(open_fds())
                tasks.append(len(asyncio.all_tasks()))
                # one probe per current node: every dropped node's probe was closed
                assert stats.opened - stats.closed == len(scheduler._probes)
    finally:
        await scheduler.close()
    print(f"{cycles} cycles: probes opened {stats.opened} closed {stats.closed}, "
          f"fds {min(fds)}..{max(fds)}, tasks {min(tasks)}..{max(tasks)}, reasons {reasons_seen}")
    assert stats.opened == stats.closed
    assert reasons_seen == {r.value for r in Reason}
    assert _stable(fds, slack=2), fds
    assert max(tasks) <= tasks_before + 2, (tasks_before, tasks)
    assert len(asyncio.all_tasks()) <= tasks_before
