"""Tier 3: a real 3 + 3 Redis Cluster with TLS and a password; faults injected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from support.depwatch_harness import Samples, fast_env, running_depwatch, series, value
from support.redis_servers import REDIS_PASSWORD, RedisCluster, TlsMaterial

pytestmark = pytest.mark.asyncio


def cluster_env(cluster: RedisCluster, tls: TlsMaterial | None, **extra: str) -> dict[str, str]:
    env = fast_env(REDIS_ADDRESS=",".join(cluster.addresses[:2]), REDIS_CLUSTER_MODE="true",
                   REDIS_PASSWORD=REDIS_PASSWORD)  # fmt: skip
    if tls is not None:
        env.update(REDIS_TLS_ENABLED="true", REDIS_TLS_CA_FILE=str(tls.ca_file))
    env.update(extra)
    return env


def roles(m: Samples) -> dict[str, str]:
    return {dict(labels)["node"]: dict(labels)["role"]
            for labels in series(m, "redis_cluster_node_info")}  # fmt: skip


def all_up(nodes: list[str]) -> Callable[[Samples], bool]:
    return lambda m: all(value(m, "redis_health_check_up", node=n) == 1 for n in nodes)


async def test_cluster_discovered_roles_shards_all_up(redis_cluster_tls: RedisCluster,
                                                      tls_material: TlsMaterial) -> None:
    nodes = redis_cluster_tls.addresses
    async with running_depwatch(cluster_env(redis_cluster_tls, tls_material)) as dw:
        # right after creation a seed's gossip view can still list a replica as primary;
        # INFO shows the real role, which triggers a refresh: wait for it to converge
        m = await dw.wait_metrics(
            lambda m: all_up(nodes)(m) and len(series(m, "redis_cluster_node_info")) == 6
            and value(m, "redis_cluster_state_ok") == 1
            and sorted(roles(m).values()).count("primary") == 3, within=15)
        info = series(m, "redis_cluster_node_info")
        assert len(info) == 6
        assert set(roles(m)) == set(nodes)
        primaries = {a.address for a in redis_cluster_tls.primaries()}
        assert {n for n, r in roles(m).items() if r == "primary"} == primaries
        shards: dict[str, set[str]] = {}
        for labels in info:
            d = dict(labels)
            shards.setdefault(d["shard"], set()).add(d["role"])
            assert len(d["node_id"]) == 40
        assert len(shards) == 3 and all(r == {"primary", "replica"} for r in shards.values())
        assert value(m, "redis_cluster_state_ok") == 1
        assert value(m, "redis_cluster_slots_ok") == 16384
        for n in nodes:
            assert value(m, "redis_node_maxclients", node=n) == 10000
        body = await dw.metrics_text()
        status = await dw.status()
        assert status["redis"]["mode"] == "cluster" and len(status["redis"]["nodes"]) == 6
        assert REDIS_PASSWORD not in body and REDIS_PASSWORD not in str(status)


async def test_primary_killed_fails_over_and_rejoins(
        redis_cluster_factory: Callable[..., RedisCluster], tls_material: TlsMaterial) -> None:
    cluster = redis_cluster_factory(tls=True, password=REDIS_PASSWORD, node_timeout_ms=1000)
    victim = cluster.primaries()[0]
    (replica,) = cluster.replicas_of(victim)
    interval = 0.3
    async with running_depwatch(cluster_env(cluster, tls_material)) as dw:
        await dw.wait_metrics(all_up(cluster.addresses), within=15)
        victim.kill()
        m = await dw.wait_metrics(
            lambda m: value(m, "redis_health_check_up", node=victim.address) == 0, within=10)
        failed = {dict(k)["reason"]: v for k, v in series(m, "redis_health_check_failed_total")
                  .items() if dict(k)["node"] == victim.address}  # fmt: skip
        assert failed["connection_refused"] + failed["connection_reset"] >= 1
        # node timeout 1 s + election, then 2 intervals for depwatch to notice the role change
        started = time.monotonic()
        m = await dw.wait_metrics(lambda m: roles(m).get(replica.address) == "primary",
                                  within=1.0 + 2 * interval + 10)  # fmt: skip
        promoted_after = time.monotonic() - started
        assert victim.address in roles(m)  # still listed by the cluster: series kept, up 0
        victim.restart()
        m = await dw.wait_metrics(
            lambda m: value(m, "redis_health_check_up", node=victim.address) == 1
            and roles(m).get(victim.address) == "replica", within=20)
        assert roles(m)[replica.address] == "primary"
    assert promoted_after < 15


async def test_paused_node_times_out_and_metrics_keep_answering(
        redis_cluster_factory: Callable[..., RedisCluster], tls_material: TlsMaterial) -> None:
    cluster = redis_cluster_factory(tls=True, password=REDIS_PASSWORD, node_timeout_ms=5000)
    victim = cluster.replicas()[0]
    env = cluster_env(cluster, tls_material, DEPWATCH_PROBE_INTERVAL="500ms",
                      DEPWATCH_HEALTH_CHECK_TIMEOUT="300ms", DEPWATCH_HEALTH_CHECK_BACKOFF="100ms")
    deadline = 3 * 0.3 + 2 * 0.1
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(all_up(cluster.addresses), within=15)
        victim.pause()
        try:
            m = await dw.wait_metrics(
                lambda m: (value(m, "redis_health_check_failed_total", node=victim.address,
                                 reason="timeout") or 0) >= 1, within=10)  # fmt: skip
            status = await dw.status()
            node = next(n for n in status["redis"]["nodes"] if n["node"] == victim.address)
            assert node["attempts"] == 3
            # the cycle containing the timed-out check ended within the per-target deadline
            buckets = series(m, "depwatch_probe_cycle_duration_seconds_bucket")
            assert buckets  # cycle histogram is live
            for _ in range(5):  # /metrics answers fast while the node hangs
                started = time.monotonic()
                await dw.metrics()
                assert time.monotonic() - started < 1.0
                await asyncio.sleep(0.1)
            cycle_sum = value(m, "depwatch_probe_cycle_duration_seconds_sum")
            cycle_count = value(m, "depwatch_probe_cycle_duration_seconds_count")
            assert cycle_sum is not None and cycle_count
        finally:
            victim.resume()
        await dw.wait_metrics(lambda m: value(m, "redis_health_check_up",
                                              node=victim.address) == 1, within=2 * 0.5 + 3)
    slowest = min(float(dict(k)["le"]) for k, v in buckets.items()
                  if dict(k)["le"] != "+Inf" and v == cycle_count)  # fmt: skip
    assert slowest <= 2.5 and deadline < 2.5


async def test_reset_once_recovered_by_retry_then_persistent(
        redis_standalone, reset_proxy_factory) -> None:  # type: ignore[no-untyped-def]
    proxy = await reset_proxy_factory(redis_standalone.host, redis_standalone.port)
    node = proxy.address
    env = fast_env(REDIS_ADDRESS=node, DEPWATCH_PROBE_INTERVAL="300ms")
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(lambda m: value(m, "redis_health_check_up", node=node) == 1,
                              within=10)  # fmt: skip
        # the next request on the long-lived connection is answered by a RST
        proxy.reset_next(1)
        m = await dw.wait_metrics(
            lambda m: (value(m, "redis_health_check_attempt_failures_total", node=node,
                             reason="connection_reset") or 0) >= 1, within=10)  # fmt: skip
        assert value(m, "redis_health_check_failed_total", node=node,
                     reason="connection_reset") == 0  # fmt: skip
        m = await dw.wait_metrics(lambda m: value(m, "redis_health_check_up", node=node) == 1,
                                  within=5)  # fmt: skip
        proxy.reset_all(True)
        m = await dw.wait_metrics(
            lambda m: (value(m, "redis_health_check_failed_total", node=node,
                             reason="connection_reset") or 0) >= 1, within=10)  # fmt: skip
        assert value(m, "redis_health_check_attempt_failures_total", node=node,
                     reason="connection_reset") >= 3  # fmt: skip
        assert value(m, "redis_health_check_up", node=node) == 0
