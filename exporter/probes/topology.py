"""Cluster discovery from the seed(s): CLUSTER SHARDS, falling back to SLOTS / NODES.

Each refresh opens a short-lived connection to the first seed (or known node) that
answers, reads the topology and CLUSTER INFO, and closes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from redis.credentials import CredentialProvider
from redis.exceptions import ResponseError
from structlog.typing import FilteringBoundLogger

from exporter.classify import classify_redis_error, describe_error
from exporter.config import Settings
from exporter.model import ClusterNode, ClusterTopology, Reason
from exporter.redis_conn import open_connection_for, split_address
from exporter.redis_parse import (
    parse_cluster_info,
    parse_cluster_nodes,
    parse_cluster_shards,
    parse_cluster_slots,
)

__all__ = ["discover", "standalone_topology"]


def standalone_topology(settings: Settings, *, now: float) -> ClusterTopology:
    nodes = tuple(ClusterNode(address=a) for a in settings.redis_address or ())
    return ClusterTopology(cluster=False, nodes=nodes, discovered_at=now)


def _is_unknown_command(exc: ResponseError) -> bool:
    text = str(exc).lower()
    return "unknown subcommand" in text or "unknown command" in text


async def _read_topology(address: str, settings: Settings,
                         credentials: CredentialProvider | None) -> ClusterTopology:
    conn = open_connection_for(address, settings, credentials=credentials,
                               timeout=settings.health_check_timeout)  # fmt: skip
    host, _ = split_address(address)
    try:
        await conn.connect()
        nodes: tuple[ClusterNode, ...]
        try:
            await conn.send_command("CLUSTER", "SHARDS", check_health=False)
            nodes = parse_cluster_shards(await conn.read_response(),
                                         tls=settings.redis_tls_enabled, fallback_host=host)
        except ResponseError as exc:
            if not _is_unknown_command(exc):
                raise
            try:
                await conn.send_command("CLUSTER", "SLOTS", check_health=False)
                nodes = parse_cluster_slots(await conn.read_response(), fallback_host=host)
            except ResponseError as slots_exc:
                if not _is_unknown_command(slots_exc):
                    raise
                await conn.send_command("CLUSTER", "NODES", check_health=False)
                nodes = parse_cluster_nodes(await conn.read_response(), fallback_host=host)
        await conn.send_command("CLUSTER", "INFO", check_health=False)
        state_ok, slots_ok = parse_cluster_info(await conn.read_response())
        return ClusterTopology(cluster=True, nodes=nodes, state_ok=state_ok, slots_ok=slots_ok)
    finally:
        await conn.disconnect(nowait=True)


async def discover(
    settings: Settings,
    *,
    credentials: CredentialProvider | None,
    previous: ClusterTopology | None,
    wall_clock: Callable[[], float],
    log: FilteringBoundLogger | None = None,
) -> ClusterTopology:
    """A fresh topology, or the previous node list marked with the failure's reason."""
    now = wall_clock()
    if not settings.redis_cluster_mode:
        return standalone_topology(settings, now=now)
    seeds: Sequence[str] = settings.redis_address or ()
    known = [a for a in (previous.addresses if previous else ()) if a not in seeds]
    reason: Reason = Reason.OTHER
    for address in [*seeds, *known]:
        try:
            async with asyncio.timeout(settings.health_check_timeout * 2):
                topology = await _read_topology(address, settings, credentials)
        except Exception as exc:  # noqa: BLE001 - try the next candidate
            reason = classify_redis_error(exc)
            if log is not None:
                log.debug("topology refresh failed", node=address, reason=str(reason),
                          error=describe_error(exc))  # fmt: skip
            continue
        if topology.nodes:
            return ClusterTopology(True, topology.nodes, topology.state_ok, topology.slots_ok,
                                   discovered_at=now)  # fmt: skip
    fallback = previous.nodes if previous and previous.nodes else tuple(
        ClusterNode(address=a) for a in seeds
    )
    return ClusterTopology(cluster=True, nodes=fallback, state_ok=None, slots_ok=None,
                           discovered_at=now, error_reason=reason)  # fmt: skip
