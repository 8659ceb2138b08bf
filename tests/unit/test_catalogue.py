"""What render emits is exactly the catalogue, and the catalogue is exactly SPEC.md §4."""

import re
from pathlib import Path

import pytest

from exporter.metrics import CATALOGUE, render
from exporter.model import (
    ClusterNode,
    ClusterTopology,
    CycleResult,
    NodeCheck,
    NodeInfo,
    OtlpConfigInfo,
    OtlpProbeResult,
    Reason,
    Role,
    Snapshot,
    SocketObservation,
    frozen_map,
)
from exporter.snapshot import fold

SPEC = Path(__file__).resolve().parents[3] / "shared" / "SPEC.md"


def spec_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (type, labels) from SPEC §4's metric table."""
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in SPEC.read_text().splitlines():
        if not re.match(r"^\| (redis|otlp|pod|depwatch)_", line):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names, kind, labels = cells[0], cells[1], cells[2]
        kind = "gauge" if kind.startswith("gauge") else kind
        label_set = tuple(x.strip() for x in labels.split(",") if x.strip())
        for name in names.split(","):
            rows[name.strip()] = (kind, label_set)
    return rows


def test_catalogue_is_spec() -> None:
    spec = spec_table()
    assert len(spec) >= 29
    ours = {m.name: (m.kind, m.labels) for m in CATALOGUE}
    assert ours == spec


def full_snapshot() -> Snapshot:
    topo = ClusterTopology(cluster=True, nodes=(
        ClusterNode("10.0.0.1:6379", "a" * 40, Role.PRIMARY, "0-16383"),
        ClusterNode("10.0.0.2:6379", "b" * 40, Role.REPLICA, "0-16383"),
    ), state_ok=True, slots_ok=16384)  # fmt: skip
    info = NodeInfo(connected_clients=5, maxclients=65000, rejected_connections=0)
    cycle = CycleResult(
        started_at=1.0, finished_at=1.5, topology=topo,
        node_checks=(
            NodeCheck("10.0.0.1:6379", True, 2, (Reason.CONNECTION_RESET,), 0.001, None, 1.5, info),
            NodeCheck("10.0.0.2:6379", False, 3, (Reason.TIMEOUT,) * 3, None, "x", 1.5),
        ),
        otlp_results=(OtlpProbeResult("10.1.0.1:4317", "grpc", False, "connection_refused"),
                      OtlpProbeResult("10.1.0.1:4318", "http/protobuf", True, None, 0.01)),
        otlp_config=(OtlpConfigInfo("metrics", "http://collector:4317", "grpc"),),
        otlp_mismatch=frozen_map({("metrics", "configured_unreachable"): True}),
        sockets=SocketObservation(
            redis_sockets=frozen_map({"10.0.0.1:6379": {"established": 3},
                                      "10.0.0.2:6379": {}}),
            collector_sockets=frozen_map({"10.1.0.1:4318": {"established": 1}}),
            tcp_counters=frozen_map({"estab_resets": 1, "attempt_fails": 2, "out_resets": 3,
                                     "retrans_segs": 4}),
        ),
        pool_max_conns=frozen_map({"10.0.0.1:6379": 1000, "10.0.0.2:6379": 1000}),
    )  # fmt: skip
    return fold(Snapshot(), cycle, redis_enabled=True, otlp_enabled=True)


def _exposed(family) -> set[str]:
    return {s.name for s in family.samples}


def test_render_emits_exactly_the_catalogue() -> None:
    families = list(render(full_snapshot()))
    names = []
    for fam in families:
        names.append(fam.name + "_total" if fam.type == "counter" else fam.name)
        assert fam.samples, f"{fam.name} has no samples in a full snapshot"
    assert names == [m.name for m in CATALOGUE]


def test_every_reason_precreated_at_zero() -> None:
    fam = next(f for f in render(full_snapshot()) if f.name == "redis_health_check_failed")
    node1 = {s.labels["reason"]: s.value for s in fam.samples
             if s.labels["node"] == "10.0.0.1:6379" and s.name.endswith("_total")}  # fmt: skip
    assert node1 == {r.value: 0 for r in Reason}
    node2 = {s.labels["reason"]: s.value for s in fam.samples
             if s.labels["node"] == "10.0.0.2:6379" and s.name.endswith("_total")}  # fmt: skip
    assert node2["timeout"] == 1


def test_mismatch_series_always_exist() -> None:
    fam = next(f for f in render(full_snapshot()) if f.name == "otlp_exporter_config_mismatch")
    assert {s.labels["reason"]: s.value for s in fam.samples} == {
        "port_protocol": 0, "configured_unreachable": 1, "observed_port": 0}


@pytest.mark.parametrize("snapshot", [Snapshot(), Snapshot(redis_enabled=True)])
def test_empty_snapshot_renders(snapshot: Snapshot) -> None:
    families = list(render(snapshot))
    assert families[0].name == "redis_health_checks"
