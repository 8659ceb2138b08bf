"""The alert rules: promtool's checks and unit tests, and the mixin conventions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import dashboard_queries as dq

ALERTS_DIR = dq.REPO_ROOT / "alerts"
RUNBOOK = ALERTS_DIR / "runbook.md"
UNIT_TESTS = sorted((ALERTS_DIR / "tests").glob("*.yml"))
RUNBOOK_URL = "https://github.com/depwatch/depwatch/blob/main/alerts/runbook.md#"

REQUIRED_ALERTS = {
    "RedisHealthCheckFailureRate",
    "RedisHealthCheckRetriesHidingFailures",
    "RedisNodeDown",
    "RedisClusterStateNotOk",
    "RedisConnectionPoolExhausted",
    "RedisNodeConnectionsHigh",
    "RedisConnectionBudgetExceedsMaxclients",
    "OTLPExporterConfigMismatch",
    "OTLPExportProbeFailing",
    "DepwatchDown",
    "DepwatchProbeLoopStalled",
}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package (.ci/setup)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, check=False, timeout=60
    )


def _seconds(duration: str) -> int:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|[smhdwy])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return int(sum(int(n) * units[u] for n, u in parts))


def _alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(dq.RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


ALERTS = {rule["alert"]: rule for rule in _alerts()}


def _github_anchor(heading: str) -> str:
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def _runbook_anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    return {_github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


# --------------------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    result = _run("check", "rules", str(dq.RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests() -> None:
    assert UNIT_TESTS, "no promtool unit tests under alerts/tests/"
    result = _run("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The harness is not vacuous: a wrong expectation makes promtool fail."""
    source = ALERTS_DIR / "tests" / "redis.yml"
    broken = source.read_text(encoding="utf-8").replace(
        "summary: A Redis node fails every health check.", "summary: something else"
    )
    assert broken != source.read_text(encoding="utf-8")
    (tmp_path / "tests").mkdir()
    shutil.copy(dq.RULES, tmp_path / dq.RULES.name)
    (tmp_path / "tests" / "redis.yml").write_text(broken, encoding="utf-8")
    result = _run("test", "rules", str(tmp_path / "tests" / "redis.yml"))
    assert result.returncode != 0


# --------------------------------------------------------------------------- conventions


def test_required_alerts_exist() -> None:
    assert set(ALERTS) >= REQUIRED_ALERTS, sorted(REQUIRED_ALERTS - set(ALERTS))


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert_follows_the_mixin_conventions(name: str) -> None:
    rule = ALERTS[name]
    assert re.fullmatch(r"(Redis|OTLP|Depwatch)[A-Z][A-Za-z]+", name)
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert "{{" not in annotations["summary"], "summary is fixed text"
    assert "{{" in annotations["description"], "description is templated"
    assert annotations["runbook_url"] == RUNBOOK_URL + name.lower()
    assert name.lower() in _runbook_anchors(), f"alerts/runbook.md has no section {name}"
    assert _seconds(rule["for"]) > 0, "every alert waits before firing"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_runbook_section_says_how_to_confirm_and_fix(name: str) -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
    for part in ("**Meaning.**", "**Confirm.**", "**Fix.**"):
        assert part in section, f"{name}: runbook section lacks {part}"
    assert "```" in section, f"{name}: give a query or a command to confirm"


def test_metric_names_are_in_the_spec() -> None:
    allowed = dq.spec_metric_names() | dq.ALLOWED_EXTRA_METRICS
    for query in dq.alert_queries():
        unknown = dq.metric_names(query.expr) - allowed
        assert not unknown, f"{query.source}: not in SPEC.md §4: {sorted(unknown)}"


def test_failure_rates_are_ratios_not_raw_rates() -> None:
    for name, numerator, denominator in [
        (
            "RedisHealthCheckFailureRate",
            "redis_health_check_failed_total",
            "redis_health_checks_total",
        ),
        ("OTLPExportProbeFailing", "otlp_export_probe_failed_total", "otlp_export_probes_total"),
        ("RedisConnectionPoolExhausted", "redis_pool_current_conns", "redis_pool_max_conns"),
    ]:
        expr = ALERTS[name]["expr"]
        assert expr.index(numerator) < expr.index("/") < expr.index(denominator), name


def test_incident_thresholds() -> None:
    assert "> 0.10" in ALERTS["RedisHealthCheckFailureRate"]["expr"]
    assert ALERTS["RedisHealthCheckFailureRate"]["for"] == "5m"
    assert "> 0.80" in ALERTS["RedisConnectionPoolExhausted"]["expr"]
    assert ALERTS["RedisConnectionPoolExhausted"]["for"] == "2m"
    assert "> 8000" in ALERTS["RedisNodeConnectionsHigh"]["expr"]
    budget = ALERTS["RedisConnectionBudgetExceedsMaxclients"]["expr"]
    assert "sum by (node) (redis_pool_max_conns)" in budget
    assert "> on (node)" in budget


def test_connections_threshold_is_in_one_place() -> None:
    """The 8000 is written once in the rules; the runbook documents it."""
    rules_text = dq.RULES.read_text(encoding="utf-8")
    exprs = [rule["expr"] for rule in _alerts()]
    assert sum(expr.count("8000") for expr in exprs) == 1
    annotations = [str(rule["annotations"]) for rule in _alerts()]
    assert not any("8000" in text for text in annotations), "use $value, not a copy"
    assert "8000" in rules_text.split("RedisNodeConnectionsHigh", 1)[1]
    assert "**8000**" in RUNBOOK.read_text(encoding="utf-8")


def test_depwatch_down_works_with_a_podmonitor() -> None:
    expr = ALERTS["DepwatchDown"]["expr"]
    assert 'up{job=~".*depwatch.*"} == 0' in expr
    assert 'absent(up{job=~".*depwatch.*"})' in expr


# --------------------------------------------------------------------------- unit tests


def _unit_test_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["rule_files"] == ["../depwatch.rules.yml"], path
        interval = _seconds(document.get("evaluation_interval", "1m"))
        for test in document["tests"]:
            cases.append((path.name, {**test, "_evaluation_interval": interval}))
    return cases


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_is_tested_at_its_for_boundary(name: str) -> None:
    """Not firing (but pending) one evaluation before `for:` runs out, firing at it."""
    hold = _seconds(ALERTS[name]["for"])
    found = False
    for _file, test in _unit_test_cases():
        step = test["_evaluation_interval"]
        entries = [e for e in test.get("alert_rule_test", []) if e["alertname"] == name]
        silent = {_seconds(e["eval_time"]) for e in entries if not e.get("exp_alerts")}
        firing = [e for e in entries if e.get("exp_alerts")]
        for entry in firing:
            at = _seconds(entry["eval_time"])
            if at - step not in silent or at < hold:
                continue
            pending = [
                p
                for p in test.get("promql_expr_test", [])
                if p["expr"] == f'ALERTS{{alertname="{name}"}}'
                and _seconds(p["eval_time"]) == at - step
            ]
            assert pending, f"{name}: no ALERTS pending check at {at - step}s"
            assert all('alertstate="pending"' in s["labels"] for s in pending[0]["exp_samples"])
            for alert in entry["exp_alerts"]:
                assert alert["exp_labels"]["severity"] == ALERTS[name]["labels"]["severity"]
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}
                assert "{{" not in alert["exp_annotations"]["description"]
            found = True
    assert found, f"{name}: no test with exp_alerts [] one evaluation before firing"
