"""Benchmark: what a /metrics render costs as the cluster grows.

For each node count, a snapshot like a healthy cluster's (every node up, INFO read,
sockets counted) is folded from 5 cycles. Then, over ``--rounds`` rounds:
- ``render()`` alone: the snapshot turned into metric families;
- ``fold()`` alone: one cycle folded into the snapshot;
- ``fold()`` plus one OpenMetrics exposition (what the first scrape after each cycle
  pays, reusing the families that did not change). The exposition figure is the
  difference.

CPU time (``time.process_time``) per round, in ms. No network, no processes.

    python bench/render_scaling.py [--nodes 6 30 200] [--rounds 200]
"""

from __future__ import annotations

import argparse
import time

from exporter.exposition import CachedExposition
from exporter.metrics import build_registry, render
from exporter.model import (
    ClusterNode,
    ClusterTopology,
    CycleResult,
    NodeCheck,
    NodeInfo,
    Role,
    Snapshot,
    SocketObservation,
    frozen_map,
)
from exporter.snapshot import fold

#: what Prometheus sends
ACCEPT = ("application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.5,"
          "text/plain;version=0.0.4;q=0.4")  # fmt: skip


def topology(nodes: int) -> ClusterTopology:
    members = tuple(
        ClusterNode(f"10.0.{i // 200}.{i % 200 + 1}:6379", f"{i:040x}",
                    Role.PRIMARY if i % 2 == 0 else Role.REPLICA, str(i // 2))
        for i in range(nodes)
    )  # fmt: skip
    return ClusterTopology(cluster=True, nodes=members, state_ok=True, slots_ok=16384)


def cycle(topo: ClusterTopology, at: float) -> CycleResult:
    """A cycle in which every node answers (the PING varies, so histograms change)."""
    info = NodeInfo(connected_clients=5, maxclients=65000, rejected_connections=0)
    return CycleResult(
        started_at=at, finished_at=at + 0.01, topology=topo,
        node_checks=tuple(NodeCheck(n.address, True, 1, (), 0.0001 * (1 + at % 7), None, at,
                                    info) for n in topo.nodes),
        sockets=SocketObservation(redis_sockets=frozen_map(
            {n.address: {"established": 3} for n in topo.nodes})),
        pool_max_conns=frozen_map({n.address: 100 for n in topo.nodes}),
    )  # fmt: skip


def measure(nodes: int, rounds: int) -> dict[str, float]:
    topo = topology(nodes)
    state = {"snapshot": Snapshot(redis_enabled=True)}

    def advance(at: float) -> None:
        state["snapshot"] = fold(state["snapshot"], cycle(topo, at), redis_enabled=True,
                                 otlp_enabled=False)  # fmt: skip

    for at in range(5):
        advance(float(at))
    exposition = CachedExposition(build_registry(lambda: state["snapshot"]),
                                  lambda: state["snapshot"])  # fmt: skip
    started = time.process_time()
    for _ in range(rounds):
        list(render(state["snapshot"]))
    rendered = time.process_time()
    for i in range(rounds):
        advance(10.0 + i)
    folded = time.process_time()
    for i in range(rounds):
        advance(10.0 + rounds + i)
        exposition._body(ACCEPT)  # the handler's work, without HTTP
    exposed = time.process_time()
    per = 1000 / rounds
    return {
        "render_ms": (rendered - started) * per,
        "fold_ms": (folded - rendered) * per,
        "exposition_ms": ((exposed - folded) - (folded - rendered)) * per,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[6, 30, 200])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print(f"{'nodes':>6} {'render ms':>10} {'fold ms':>8} {'exposition ms':>14} {'per node':>9}")
    for nodes in args.nodes:
        m = measure(nodes, max(1, args.rounds))
        print(f"{nodes:>6} {m['render_ms']:>10.2f} {m['fold_ms']:>8.2f} "
              f"{m['exposition_ms']:>14.2f} {m['exposition_ms'] / nodes:>9.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
