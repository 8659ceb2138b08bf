"""Tier 3 recovery: a whole cluster down for 15 s and back; a node joining and leaving.

Every node of a real 3-primary cluster is SIGSTOPped (each one then hangs: the kernel
still completes TCP handshakes, nothing answers) for 15 s. depwatch is not restarted:
all nodes must be up again within 3 probe intervals of the resume, and /healthz must
stay 200 throughout (a dependency outage never fails it).

Sync helpers (redis-cli, redis-py admin clients) run in worker threads: depwatch runs
in-process on the test's event loop and must not be blocked by the test itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.depwatch_harness import Harness, Samples, running_depwatch, series, value
from support.redis_servers import RedisCluster, RedisServer, free_cluster_port, wait_for

pytestmark = pytest.mark.asyncio

INTERVAL = 1.0
#: the defaults' proportions scaled down (5 s / 2 s x 3 / 500 ms): timeout 400 ms,
#: 3 attempts, 100 ms backoff, so the per-target deadline (1.4 s) exceeds the interval
ENV = {
    "DEPWATCH_PROBE_INTERVAL": "1s",
    "DEPWATCH_HEALTH_CHECK_TIMEOUT": "400ms",
    "DEPWATCH_HEALTH_CHECK_ATTEMPTS": "3",
    "DEPWATCH_HEALTH_CHECK_BACKOFF": "100ms",
    "DEPWATCH_TOPOLOGY_REFRESH_INTERVAL": "1s",
    "REDIS_CLUSTER_MODE": "true",
}
#: polling /metrics and the event loop's own jitter on a busy 2-core machine
SLACK = 0.75


def all_up(nodes: list[str]) -> Callable[[Samples], bool]:
    return lambda m: all(value(m, "redis_health_check_up", node=n) == 1 for n in nodes)


def nodes_in_metrics(m: Samples) -> set[str]:
    return {dict(labels)["node"] for labels in series(m, "redis_health_checks_total")}


async def _healthz(dw: Harness) -> int:
    resp = await dw.client.get("/healthz")
    return resp.status


async def test_every_node_down_15s_then_back_without_restart(
        redis_cluster_factory: Callable[..., RedisCluster]) -> None:
    cluster = await asyncio.to_thread(redis_cluster_factory, primaries=3,
                                      replicas_per_primary=1, node_timeout_ms=3000)  # fmt: skip
    nodes = cluster.addresses
    env = {**ENV, "REDIS_ADDRESS": ",".join(nodes[:3])}
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(all_up(nodes), within=20)
        for node in cluster.nodes:
            node.pause()
        paused_at = time.monotonic()
        health: list[int] = []
        try:
            await dw.wait_metrics(lambda m: all(value(m, "redis_health_check_up", node=n) == 0
                                                for n in nodes), within=10)  # fmt: skip
            while time.monotonic() - paused_at < 15:
                health.append(await _healthz(dw))
                m = await dw.metrics()  # /metrics keeps answering from the last cycle
                assert nodes_in_metrics(m) == set(nodes), "a failed node lost its series"
                await asyncio.sleep(0.25)
        finally:
            for node in cluster.nodes:
                node.resume()
        resumed_at = time.monotonic()
        await dw.wait_metrics(all_up(nodes), within=3 * INTERVAL + SLACK, interval=0.05)
        recovered_after = time.monotonic() - resumed_at
        # the topology (cluster_state) comes back with the next refresh, as promptly
        await dw.wait_metrics(lambda m: value(m, "redis_cluster_state_ok") == 1,
                              within=3 * INTERVAL + SLACK, interval=0.05)  # fmt: skip
        state_after = time.monotonic() - resumed_at
        health.append(await _healthz(dw))
    assert health and set(health) == {200}, f"/healthz during the outage: {health}"
    assert recovered_after <= 3 * INTERVAL + SLACK
    assert state_after <= 3 * INTERVAL + SLACK
    print(f"all nodes up {recovered_after:.2f}s, cluster_state ok {state_after:.2f}s "
          "after the resume")


def _cluster_nodes_text(server: RedisServer) -> str:
    with server.client() as conn:
        return str(conn.execute_command("CLUSTER", "NODES"))


def _start_joining_node(cluster: RedisCluster, workdir: Path) -> RedisServer:
    """A fresh cluster-enabled node, introduced with CLUSTER MEET (a primary, no slots)."""
    port = free_cluster_port()
    node = RedisServer(workdir, port=port, extra=[
        ("cluster-enabled", "yes"), ("cluster-config-file", "nodes.conf"),
        ("cluster-node-timeout", str(cluster.node_timeout_ms)),
        ("cluster-announce-ip", "127.0.0.1"), ("cluster-port", str(port + 10000)),
    ])  # fmt: skip
    node.start()
    try:
        with cluster.nodes[0].client() as conn:
            conn.execute_command("CLUSTER", "MEET", "127.0.0.1", str(port), str(port + 10000))
        for member in cluster.nodes:
            wait_for(lambda m=member: node.address in _cluster_nodes_text(m), timeout=15,
                     description=f"{member.address} knows the new node")  # fmt: skip
    except BaseException:
        node.stop()
        raise
    return node


def _forget_everywhere(cluster: RedisCluster, node: RedisServer) -> None:
    """CLUSTER FORGET on every other node (within the 60 s ban), then stop the node."""
    with node.client() as conn:
        node_id = str(conn.execute_command("CLUSTER", "MYID"))
    for member in cluster.nodes:
        with member.client() as conn:
            conn.execute_command("CLUSTER", "FORGET", node_id)
    node.stop()
    for member in cluster.nodes:
        wait_for(lambda m=member: node.address not in _cluster_nodes_text(m), timeout=10,
                 description=f"{member.address} forgot the node")  # fmt: skip


async def test_node_added_then_removed_series_follow(
        redis_cluster_factory: Callable[..., RedisCluster], tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(redis_cluster_factory, primaries=3,
                                      replicas_per_primary=0)  # fmt: skip
    nodes = cluster.addresses
    env = {**ENV, "REDIS_ADDRESS": ",".join(nodes)}
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(lambda m: all_up(nodes)(m) and nodes_in_metrics(m) == set(nodes),
                              within=15)  # fmt: skip
        joined = await asyncio.to_thread(_start_joining_node, cluster, tmp_path / "joining")
        try:
            known_at = time.monotonic()
            m = await dw.wait_metrics(
                lambda m: value(m, "redis_health_check_up", node=joined.address) == 1,
                within=3 * INTERVAL + SLACK, interval=0.05)
            appeared_after = time.monotonic() - known_at
            info = {dict(labels)["node"]: dict(labels)
                    for labels in series(m, "redis_cluster_node_info")}  # fmt: skip
            assert info[joined.address]["role"] == "primary"
            assert len(info[joined.address]["node_id"]) == 40

            await asyncio.to_thread(_forget_everywhere, cluster, joined)
            forgotten_at = time.monotonic()
            m = await dw.wait_metrics(lambda m: joined.address not in nodes_in_metrics(m),
                                      within=3 * INTERVAL + SLACK, interval=0.05)  # fmt: skip
            removed_after = time.monotonic() - forgotten_at
        finally:
            await asyncio.to_thread(joined.stop)
        body = await dw.metrics_text()
        assert joined.address not in body, "a node that left the cluster kept a series"
        assert nodes_in_metrics(m) == set(nodes)
    assert appeared_after <= 3 * INTERVAL + SLACK
    assert removed_after <= 3 * INTERVAL + SLACK
    print(f"joined node's series after {appeared_after:.2f}s, gone {removed_after:.2f}s "
          "after CLUSTER FORGET")
