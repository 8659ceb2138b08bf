"""Fold one cycle's results into the cumulative snapshot (pure).

Counters and histograms accumulate here; nodes that left the topology and OTLP
endpoints no longer probed are dropped, so their series disappear.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TypeVar

from exporter.model import (
    ClusterTopology,
    CycleResult,
    NodeCheck,
    NodeInfo,
    NodeState,
    OtlpProbeResult,
    OtlpProbeState,
    Snapshot,
    frozen_map,
)

__all__ = ["fold"]

K = TypeVar("K")


def _add(counts: Mapping[K, int], items: Iterable[K]) -> Mapping[K, int]:
    merged = Counter(counts)
    merged.update(items)
    return frozen_map(merged)


def _fold_node(state: NodeState, check: NodeCheck | None) -> NodeState:
    if check is None:
        return state
    failed = [check.reason] if not check.ok and check.reason is not None else []
    duration = state.duration
    if check.ok and check.rtt_seconds is not None:
        duration = duration.observe(check.rtt_seconds)
    info = check.info or (state.info if check.ok else NodeInfo(
        maxclients=state.info.maxclients,
        rejected_connections=state.info.rejected_connections,
    ))  # fmt: skip
    return NodeState(
        node=state.node,
        checks_total=state.checks_total + 1,
        failed_total=_add(state.failed_total, failed),
        attempt_failures_total=_add(state.attempt_failures_total, check.attempt_failures),
        up=check.ok,
        duration=duration,
        last_success=check.finished_at if check.ok else state.last_success,
        last_check=check,
        info=info,
    )


def _fold_nodes(prev: Mapping[str, NodeState], topology: ClusterTopology | None,
                checks: Iterable[NodeCheck]) -> Mapping[str, NodeState]:
    if topology is None:
        return prev
    by_node = {c.node: c for c in checks}
    nodes: dict[str, NodeState] = {}
    for node in topology.nodes:
        old = prev.get(node.address)
        base = NodeState(node=node) if old is None else NodeState(
            node, old.checks_total, old.failed_total, old.attempt_failures_total, old.up,
            old.duration, old.last_success, old.last_check, old.info,
        )  # fmt: skip
        nodes[node.address] = _fold_node(base, by_node.get(node.address))
    return frozen_map(nodes)


def _fold_otlp(prev: Mapping[tuple[str, str], OtlpProbeState],
               results: Iterable[OtlpProbeResult]) -> Mapping[tuple[str, str], OtlpProbeState]:
    states: dict[tuple[str, str], OtlpProbeState] = {}
    for result in results:
        key = (result.endpoint, result.protocol)
        old = states.get(key) or prev.get(key) or OtlpProbeState(result.endpoint, result.protocol)
        duration = old.duration
        if result.ok and result.duration_seconds is not None:
            duration = duration.observe(result.duration_seconds)
        states[key] = OtlpProbeState(
            endpoint=result.endpoint,
            protocol=result.protocol,
            probes_total=old.probes_total + 1,
            failed_total=_add(old.failed_total, [] if result.ok else [result.reason or "other"]),
            up=result.ok,
            duration=duration,
            last=result,
        )
    return frozen_map(states)


def fold(prev: Snapshot, cycle: CycleResult, *, redis_enabled: bool,
         otlp_enabled: bool) -> Snapshot:
    """The snapshot after ``cycle``."""
    return Snapshot(
        cycles=prev.cycles + 1,
        last_cycle_at=cycle.finished_at,
        cycle_duration=prev.cycle_duration.observe(max(0.0, cycle.finished_at - cycle.started_at)),
        redis_enabled=redis_enabled,
        topology=cycle.topology if cycle.topology is not None else prev.topology,
        nodes=_fold_nodes(prev.nodes, cycle.topology, cycle.node_checks),
        otlp_enabled=otlp_enabled,
        otlp=_fold_otlp(prev.otlp, cycle.otlp_results) if otlp_enabled else frozen_map(),
        otlp_config=cycle.otlp_config,
        otlp_mismatch=cycle.otlp_mismatch,
        sockets=cycle.sockets,
        pool_max_conns=cycle.pool_max_conns,
    )
