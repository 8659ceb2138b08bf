"""Socket-table part of a probe cycle: the application's real pool, per node.

Each cycle reads the pod's socket table and ``/proc/net/snmp`` once (in a worker
thread), with depwatch's own sockets excluded, and computes the application's pool
limit per node. With the default DEPWATCH_PROC_ROOT the table comes from a
sock_diag netlink dump of the namespace depwatch shares with the application (a
third of the cost of ``/proc/net/tcp{,6}``); the files are read when the dump is
unavailable (logged once) or when DEPWATCH_PROC_ROOT points elsewhere. Addresses
are resolved at most once per topology refresh interval, not every cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger

from exporter.budget import ConnectionBudget, connection_budget, render_budget
from exporter.config import Settings
from exporter.model import ClusterTopology, Snapshot, frozen_map
from exporter.pool_limits import available_cpus, pool_max_per_node
from exporter.probes.sockets import observe, resolve_addresses
from exporter.redis_conn import split_address
from exporter.scheduler import CycleParts
from exporter.sockets.own_inodes import own_socket_inodes

__all__ = ["SocketPart", "add_socket_part", "budget_section"]


class SocketPart:
    def __init__(self, settings: Settings, *, log: FilteringBoundLogger) -> None:
        self._settings = settings
        self._log = log
        self._cpus = available_cpus()
        self._redis_key: object = None
        self._redis_map: Mapping[tuple[str, int], str] = {}
        self._collector_map: Mapping[tuple[str, int], str] = {}
        self._collector_hosts: frozenset[str] = frozenset()
        self._collector_resolved_at: float | None = None
        # netlink sees this process's namespace, which is what /proc/net shows too
        self._sock_diag = settings.proc_path == Path("/proc")

    async def _redis_addresses(
        self, topology: ClusterTopology | None
    ) -> Mapping[tuple[str, int], str]:
        if topology is None:
            return {}
        if self._redis_key is not topology:  # a new topology object: re-resolve
            wanted = {split_address(a): a for a in topology.addresses}
            self._redis_map = await resolve_addresses(wanted)
            self._redis_key = topology
        return self._redis_map

    async def _collector_addresses(self) -> None:
        otlp = self._settings.otlp
        if otlp is None:
            return
        now = asyncio.get_running_loop().time()
        last = self._collector_resolved_at
        fresh = last is not None and now - last < self._settings.topology_refresh
        if fresh:
            return
        ports = {self._settings.otlp_grpc_port, self._settings.otlp_http_port, otlp.port}
        self._collector_map = await resolve_addresses([(otlp.host, p) for p in sorted(ports)])
        self._collector_hosts = frozenset(ip for ip, _ in self._collector_map)
        self._collector_resolved_at = now

    async def __call__(self, topology: ClusterTopology | None) -> dict[str, object]:
        s = self._settings
        redis_map = await self._redis_addresses(topology)
        await self._collector_addresses()
        # This part runs before the cycle's probes open anything (CycleParts.first): a
        # connection of ours made while the table is read would count as the application's.
        sockets = await asyncio.to_thread(
            observe, s.proc_path, redis_nodes=redis_map, collector=self._collector_map,
            collector_hosts=self._collector_hosts, own_inodes=own_socket_inodes(),
            sock_diag=self._sock_diag,
        )  # fmt: skip
        if sockets.sock_diag_error is not None:
            self._sock_diag = False  # for the rest of this process: the files work
            self._log.warning("sock_diag unavailable, reading the socket table from /proc",
                              error=sockets.sock_diag_error)  # fmt: skip
        if sockets.error:
            self._log.debug("socket table unreadable", error=sockets.error)
        pool_max: dict[str, int] = {}
        if topology is not None:
            pool_max = pool_max_per_node(
                topology.nodes, cluster=topology.cluster, pool_size=s.redis_pool_size,
                read_only=s.redis_read_only, route_by_latency=s.redis_route_by_latency,
                cpus=self._cpus,
            )  # fmt: skip
        return {"sockets": sockets, "pool_max_conns": frozen_map(pool_max)}


def _budget(snapshot: Snapshot, replicas: int | None) -> ConnectionBudget:
    observed = snapshot.sockets.redis_sockets if snapshot.sockets else {}
    return connection_budget(
        snapshot.pool_max_conns, replicas=replicas,
        maxclients={n: st.info.maxclients for n, st in snapshot.nodes.items()},
        current={n: states.get("established", 0) for n, states in observed.items()},
    )  # fmt: skip


def budget_section(snapshot: Snapshot, replicas: int | None) -> dict[str, Any]:
    budget = _budget(snapshot, replicas)
    return {
        "title": "Connection budget",
        "replicas": budget.replicas,
        "ok": budget.ok,
        "nodes": [
            {"node": n.node, "per_pod": n.per_pod, "current": n.current,
             "fleet_worst_case": n.fleet_worst_case, "maxclients": n.maxclients,
             "exceeds": n.exceeds}
            for n in budget.nodes
        ],
        "lines": render_budget(budget),
    }  # fmt: skip


def budget_problems(snapshot: Snapshot, replicas: int | None) -> list[str]:
    return [
        f"connection budget: {n.replicas} replicas x pool {n.per_pod} = "
        f"{n.fleet_worst_case} connections to {n.node} exceeds its maxclients {n.maxclients}"
        for n in _budget(snapshot, replicas).exceeded
    ]


def add_socket_part(settings: Settings, runtime: Any, parts: CycleParts, *,
                    log: FilteringBoundLogger) -> None:  # fmt: skip
    parts.first.append(SocketPart(settings, log=log))
    if not settings.redis_enabled:
        return  # the socket table still serves the collector's connections
    replicas = settings.app_replicas
    scheduler = runtime.scheduler
    runtime.sections.append(("connection_budget",
                             lambda snap: budget_section(snap, replicas)))  # fmt: skip
    previous = runtime.extra_problems
    runtime.extra_problems = lambda: [*previous(),
                                      *budget_problems(scheduler.snapshot, replicas)]  # fmt: skip
