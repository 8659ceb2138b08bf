"""Connection budget arithmetic for the ``check`` report. Pure.

The incident's team estimated 72 pods x 1000 = 72,000 connections / 6 nodes =
12,000 per node. go-redis cluster clients apply PoolSize *per node*, so the fleet's
worst case on each node is replicas x the per-pod limit -- 72,000, above
ElastiCache's 65,000 ``maxclients``. This module makes that arithmetic explicit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ConnectionBudget", "NodeBudget", "connection_budget", "render_budget"]


@dataclass(frozen=True, slots=True)
class NodeBudget:
    node: str
    #: this pod's pool limit for the node (redis_pool_max_conns)
    per_pod: int
    #: this pod's ESTABLISHED connections to the node, when observed
    current: int | None = None
    #: application replicas, when given (--replicas / DEPWATCH_APP_REPLICAS)
    replicas: int | None = None
    #: server ``maxclients``, when the node lets us read it
    maxclients: int | None = None

    @property
    def fleet_worst_case(self) -> int | None:
        """Every replica's pool full on this node: replicas x per-pod limit."""
        return None if self.replicas is None else self.replicas * self.per_pod

    @property
    def exceeds(self) -> bool:
        """The fleet's worst case is above ``maxclients`` (False when either is unknown)."""
        fleet = self.fleet_worst_case
        return fleet is not None and self.maxclients is not None and fleet > self.maxclients

    @property
    def fleet_ratio(self) -> float | None:
        """Fleet worst case / maxclients."""
        fleet = self.fleet_worst_case
        if fleet is None or not self.maxclients:
            return None
        return fleet / self.maxclients


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    nodes: tuple[NodeBudget, ...]
    replicas: int | None = None

    @property
    def exceeded(self) -> tuple[NodeBudget, ...]:
        return tuple(n for n in self.nodes if n.exceeds)

    @property
    def ok(self) -> bool:
        """No node's worst case exceeds its maxclients (as far as known)."""
        return not self.exceeded


def connection_budget(
    pool_max: Mapping[str, int],
    *,
    replicas: int | None = None,
    maxclients: Mapping[str, int | None] | None = None,
    current: Mapping[str, int] | None = None,
) -> ConnectionBudget:
    """One :class:`NodeBudget` per node of ``pool_max`` (node -> this pod's limit),
    sorted by node. ``replicas`` below 1 is treated as unknown."""
    if replicas is not None and replicas < 1:
        replicas = None
    maxclients = maxclients or {}
    current = current or {}
    nodes = tuple(
        NodeBudget(
            node=node,
            per_pod=limit,
            current=current.get(node),
            replicas=replicas,
            maxclients=maxclients.get(node),
        )
        for node, limit in sorted(pool_max.items())
    )
    return ConnectionBudget(nodes=nodes, replicas=replicas)


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def render_budget(budget: ConnectionBudget) -> list[str]:
    """Text lines for the ``check`` report's "connection budget" section."""
    if not budget.nodes:
        return ["connection budget: no Redis nodes with a pool limit"]
    header = "connection budget"
    header += (
        f" ({budget.replicas:,} replicas)"
        if budget.replicas is not None
        else " (give --replicas N for the fleet's worst case)"
    )
    rows = [("node", "this pod", "limit/pod", "fleet worst case", "maxclients", "")]
    for n in budget.nodes:
        fleet, cap = n.fleet_worst_case, n.maxclients
        if fleet is None or cap is None:
            status = ""
        elif fleet > cap:
            status = f"EXCEEDS by {fleet - cap:,}"
        else:
            status = f"ok ({n.fleet_ratio:.0%})"
        rows.append(
            (n.node, _n(n.current), _n(n.per_pod), _n(n.fleet_worst_case), _n(n.maxclients), status)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [header + ":"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:5], widths[1:], strict=True)
        ]
        lines.append(("  " + "  ".join(cells) + "  " + row[5]).rstrip())
    if budget.exceeded:
        worst = budget.exceeded[0]
        lines.append(
            f"  WARNING: {len(budget.exceeded)} of {len(budget.nodes)} nodes would refuse "
            f"clients with every replica's pool full ({worst.replicas:,} x "
            f"{worst.per_pod:,} = {worst.fleet_worst_case:,} > maxclients "
            f"{worst.maxclients:,} on {worst.node})"
        )
    if budget.replicas is not None and len(budget.nodes) > 1:
        first = budget.nodes[0]
        naive = budget.replicas * first.per_pod // len(budget.nodes)
        lines.append(
            "  note: go-redis cluster clients apply the pool size per node: the worst case "
            f"per node is replicas x pool size ({first.fleet_worst_case:,}), not replicas "
            f"x pool size / nodes ({naive:,})"
        )
    return lines
