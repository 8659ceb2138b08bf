"""Connection budget arithmetic for the check report."""

from __future__ import annotations

from exporter.budget import connection_budget, render_budget
from exporter.model import ClusterNode, Role
from exporter.pool_limits import pool_max_per_node

INCIDENT_NODES = [
    ClusterNode(f"gateway-redis-000{s}-00{r}.cache.amazonaws.com:6379",
                role=Role.PRIMARY if r == 1 else Role.REPLICA)
    for s in (1, 2, 3) for r in (1, 2)
]  # fmt: skip


def incident_budget(replicas: int | None = 72):
    limits = pool_max_per_node(
        INCIDENT_NODES, cluster=True, pool_size=1000, read_only=True,
        route_by_latency=True, cpus=2,
    )  # fmt: skip
    return connection_budget(
        limits,
        replicas=replicas,
        maxclients={n.address: 65_000 for n in INCIDENT_NODES},
    )


def test_incident_numbers_exceed_maxclients_on_every_node() -> None:
    budget = incident_budget()
    assert len(budget.nodes) == 6
    assert not budget.ok
    assert len(budget.exceeded) == 6
    for node in budget.nodes:
        assert node.per_pod == 1000
        assert node.fleet_worst_case == 72_000
        assert node.maxclients == 65_000
        assert node.exceeds
        assert node.fleet_ratio is not None
        assert round(node.fleet_ratio, 3) == 1.108


def test_incident_report_text() -> None:
    lines = render_budget(incident_budget())
    text = "\n".join(lines)
    assert lines[0] == "connection budget (72 replicas):"
    assert text.count("EXCEEDS by 7,000") == 6
    assert "WARNING: 6 of 6 nodes" in text
    assert "72 x 1,000 = 72,000 > maxclients 65,000" in text
    assert "(72,000), not replicas x pool size / nodes (12,000)" in text


def test_without_replicas_no_verdict() -> None:
    budget = incident_budget(replicas=None)
    assert budget.ok
    assert all(n.fleet_worst_case is None and not n.exceeds for n in budget.nodes)
    text = "\n".join(render_budget(budget))
    assert "--replicas" in text
    assert "EXCEEDS" not in text
    assert "WARNING" not in text


def test_within_budget_and_unknown_maxclients() -> None:
    budget = connection_budget(
        {"a:6379": 100, "b:6379": 100, "c:6379": 100},
        replicas=72,
        maxclients={"a:6379": 65_000, "b:6379": 7_200, "c:6379": None},
        current={"a:6379": 37},
    )
    by_node = {n.node: n for n in budget.nodes}
    assert budget.ok
    assert not by_node["b:6379"].exceeds  # 7,200 is not *above* 7,200
    assert by_node["c:6379"].fleet_ratio is None
    assert by_node["a:6379"].current == 37
    text = "\n".join(render_budget(budget))
    assert "ok (11%)" in text
    assert "ok (100%)" in text
    assert "WARNING" not in text


def test_zero_replicas_is_unknown() -> None:
    assert connection_budget({"a:6379": 10}, replicas=0).replicas is None


def test_no_nodes() -> None:
    assert render_budget(connection_budget({})) == [
        "connection budget: no Redis nodes with a pool limit"
    ]


def test_primaries_only_budget_excludes_replicas() -> None:
    limits = pool_max_per_node(
        INCIDENT_NODES, cluster=True, pool_size=1000, read_only=False,
        route_by_latency=False, cpus=2,
    )  # fmt: skip
    budget = connection_budget(limits, replicas=72, maxclients=dict.fromkeys(limits, 65_000))
    assert len(budget.nodes) == 3
    assert len(budget.exceeded) == 3
