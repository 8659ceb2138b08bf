"""Checks of the Grafana dashboard model (dashboards/depwatch.json)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import dashboard_queries as dq

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    model: dict[str, Any] = json.loads(dq.DASHBOARD.read_text(encoding="utf-8"))
    return model


@pytest.fixture(scope="module")
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dq.iter_panels(dashboard))


@pytest.fixture(scope="module")
def graph_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in panels if p["type"] != "row"]


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel.get("targets", []) if t.get("expr")]


# --------------------------------------------------------------------------- the helpers


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", {"up"}),
        ('sum by (node, le) (rate(a_bucket{x="y(z)"}[5m]))', {"a_bucket"}),
        ("time() - b_seconds > 120", {"b_seconds"}),
        ("x / on (node) group_left (role) y unless z offset 5m", {"x", "y", "z"}),
        ("histogram_quantile(0.99, sum without (pod) (rate(c[1m:10s])))", {"c"}),
        ('absent(up{job=~".*depwatch.*"}) or vector(1e3)', {"up"}),
        ('count by (signal) (m == 1) > bool 0 and on () n{a="sum(b)"}', {"m", "n"}),
    ],
)
def test_metric_names_reader(expr: str, expected: set[str]) -> None:
    assert dq.metric_names(expr) == expected


def test_spec_reader_finds_the_catalogue() -> None:
    names = dq.spec_metric_names()
    assert {
        "redis_health_check_failed_total",
        "redis_pool_current_conns",
        "redis_pool_max_conns",
        "pod_tcp_retrans_segs_total",
        "redis_health_check_duration_seconds_bucket",
        "depwatch_last_cycle_timestamp_seconds",
    } <= names
    assert "redis_health_checks_total_bucket" not in names


def test_substitution_leaves_no_variable() -> None:
    for query in dq.all_queries():
        assert "$" not in query.expr, query
    assert dq.substitute('a{pod=~"$pod"}[$__rate_interval]', {"pod": ".*"}) == 'a{pod=~".*"}[1m]'
    assert dq.substitute("${pod:regex} [[pod]]", {"pod": ".*"}) == ".* .*"
    with pytest.raises(KeyError):
        dq.substitute("$nope", {})


# --------------------------------------------------------------------------- the model


def test_model_basics(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] == "depwatch"
    assert dashboard["title"]
    assert "id" not in dashboard or dashboard["id"] is None  # importable anywhere
    assert dashboard["time"]["from"].startswith("now-")


def test_panel_ids_unique(panels: list[dict[str, Any]]) -> None:
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), sorted(ids)


def test_grid_positions_fit_and_do_not_overlap(panels: list[dict[str, Any]]) -> None:
    boxes = []
    for panel in panels:
        grid = panel["gridPos"]
        assert set(grid) >= {"h", "w", "x", "y"}, panel["title"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in "hwxy"), panel["title"]
        assert grid["w"] >= 1 and grid["h"] >= 1
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        boxes.append((panel["title"], grid))
    for (a, ga), (b, gb) in itertools.combinations(boxes, 2):
        overlap = (
            ga["x"] < gb["x"] + gb["w"]
            and gb["x"] < ga["x"] + ga["w"]
            and ga["y"] < gb["y"] + gb["h"]
            and gb["y"] < ga["y"] + ga["h"]
        )
        assert not overlap, f"{a!r} overlaps {b!r}"


def test_every_panel_and_target_uses_the_datasource_variable(
    panels: list[dict[str, Any]],
) -> None:
    for panel in panels:
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource") == DATASOURCE, (panel["title"], target["refId"])


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "pod"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        text = dq._variable_query_text(variable)
        assert re.match(rf"^label_values\(.+,\s*{name}\)$", text), text
        assert variable["includeAll"] and variable["multi"]
        assert variable["allValue"] == ".*"
    assert '"$namespace"' in dq._variable_query_text(variables["pod"])
    assert {q.source for q in dq.variable_queries()} == {"variable namespace", "variable pod"}


def test_every_target_has_ref_ids_unique_per_panel(graph_panels: list[dict[str, Any]]) -> None:
    for panel in graph_panels:
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_every_selector_filters_by_namespace_and_pod(graph_panels: list[dict[str, Any]]) -> None:
    for panel in graph_panels:
        for expr in _exprs(panel):
            selected = dq.selectors(expr)
            assert {name for name, _ in selected} == dq.metric_names(expr), (
                f"{panel['title']}: every metric needs a {{...}} selector: {expr}"
            )
            for name, matchers in selected:
                assert 'namespace=~"$namespace"' in matchers, (panel["title"], name)
                assert 'pod=~"$pod"' in matchers, (panel["title"], name)


def test_metric_names_are_in_the_spec(graph_panels: list[dict[str, Any]]) -> None:
    allowed = dq.spec_metric_names() | dq.ALLOWED_EXTRA_METRICS
    for query in dq.dashboard_queries() + dq.variable_queries():
        unknown = dq.metric_names(query.expr) - allowed
        assert not unknown, f"{query.source}: not in SPEC.md §4: {sorted(unknown)}"


def test_units_and_red_descriptions(graph_panels: list[dict[str, Any]]) -> None:
    for panel in graph_panels:
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit, f"{panel['title']}: no unit"
        description = panel.get("description", "")
        assert len(description) > 80, panel["title"]
        assert re.search(r"\bred\b", description, re.IGNORECASE), (
            f"{panel['title']}: the description must say what to do when it is red"
        )


def _panel_with(graph_panels: list[dict[str, Any]], *fragments: str) -> dict[str, Any]:
    for panel in graph_panels:
        text = "\n".join(_exprs(panel))
        if all(f in text for f in fragments):
            return panel
    raise AssertionError(f"no panel whose queries contain all of {fragments}")


@pytest.mark.parametrize(
    ("fragments", "unit"),
    [
        # health check success rate: a ratio, 1 - failed / checks
        (
            ("1 - (", "redis_health_check_failed_total", "/", "redis_health_checks_total"),
            "percentunit",
        ),
        # failure reasons, checks and attempts
        (
            (
                "sum by (reason)",
                "redis_health_check_failed_total",
                "redis_health_check_attempt_failures_total",
            ),
            "ops",
        ),
        # per-node latency
        (
            (
                "histogram_quantile",
                "sum by (node, le)",
                "redis_health_check_duration_seconds_bucket",
            ),
            "s",
        ),
        (("redis_health_check_up",), "none"),
        # pool usage current / max per node
        (("redis_pool_current_conns", "/", "redis_pool_max_conns", "by (node)"), "percentunit"),
        # connection budget per node
        (
            (
                "sum by (node) (redis_pool_max_conns",
                "redis_node_maxclients",
                "redis_node_connected_clients",
            ),
            "short",
        ),
        (("redis_cluster_state_ok",), "none"),
        # OTLP exporter success rate by protocol
        (
            ("by (protocol)", "otlp_export_probe_failed_total", "/", "otlp_export_probes_total"),
            "percentunit",
        ),
        (("otlp_exporter_config_mismatch", "by (signal, reason)"), "none"),
        (("otlp_collector_connections",), "short"),
        (
            (
                "pod_tcp_estab_resets_total",
                "pod_tcp_out_resets_total",
                "pod_tcp_attempt_fails_total",
            ),
            "ops",
        ),
        (("kube_pod_container_status_restarts_total",), "short"),
        (("depwatch_probe_cycle_duration_seconds_bucket",), "s"),
        (("time() - depwatch_last_cycle_timestamp_seconds",), "s"),
    ],
)
def test_required_panels(
    graph_panels: list[dict[str, Any]], fragments: tuple[str, ...], unit: str
) -> None:
    panel = _panel_with(graph_panels, *fragments)
    assert panel["fieldConfig"]["defaults"]["unit"] == unit, panel["title"]


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    """Each substituted query, as a recording rule, through promtool's PromQL parser."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (.ci/setup)")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": query.expr}
        for i, query in enumerate(dq.dashboard_queries() + dq.variable_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
