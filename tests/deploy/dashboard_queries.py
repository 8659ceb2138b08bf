"""Every PromQL expression the dashboard and the alerts send to Prometheus.

``all_queries()`` is what a live test sends to a real Prometheus's query API:
each dashboard target with Grafana's variables substituted (``$namespace`` and
``$pod`` become ``.*``, ``$__rate_interval`` becomes ``1m``, ...) and each
alert expression as written. The module also holds the PromQL and SPEC.md
readers the deploy tests share (metric names used by an expression, metric
names the spec allows).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ALLOWED_EXTRA_METRICS",
    "BUILTIN_VARIABLES",
    "DASHBOARD",
    "REPO_ROOT",
    "RULES",
    "SPEC",
    "Query",
    "alert_queries",
    "all_queries",
    "dashboard_queries",
    "iter_panels",
    "metric_names",
    "selectors",
    "spec_metric_names",
    "substitute",
    "template_variable_values",
    "variable_queries",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "dashboards" / "depwatch.json"
RULES = REPO_ROOT / "alerts" / "depwatch.rules.yml"
# The spec lives beside the repository: ../shared/SPEC.md from the repo root.
SPEC = REPO_ROOT.parent / "shared" / "SPEC.md"

# Metrics the dashboard and alerts may use besides SPEC §4's.
ALLOWED_EXTRA_METRICS = frozenset({"up", "kube_pod_container_status_restarts_total"})

# Grafana's built-in variables, as a live test should substitute them.
BUILTIN_VARIABLES: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# A multi-value template variable with "All" selected becomes this regex.
_ALL = ".*"

_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from."""

    source: str
    expr: str


def _load_dashboard(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def template_variable_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Template variable name -> the value a query should get (All: ``.*``)."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "datasource":
            continue  # never part of an expression
        values[variable["name"]] = variable.get("allValue") or _ALL
    return values


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace ``$var``, ``${var}``, ``${var:fmt}`` and ``[[var]]``; KeyError if unknown."""
    known = {**BUILTIN_VARIABLES, **variables}

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return known[name]

    return _VARIABLE.sub(replace, expr)


def dashboard_queries(path: Path = DASHBOARD) -> list[Query]:
    """Every panel target's expression, variables substituted."""
    dashboard = _load_dashboard(path)
    variables = template_variable_values(dashboard)
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                source = f"panel {panel['id']} {panel.get('title', '')!r} target {target['refId']}"
                queries.append(Query(source, substitute(expr, variables)))
    return queries


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$", re.DOTALL)


def _variable_query_text(variable: Mapping[str, Any]) -> str:
    query = variable.get("query", "")
    if isinstance(query, Mapping):
        return str(query.get("query", ""))
    return str(query)


def variable_queries(path: Path = DASHBOARD) -> list[Query]:
    """The series selectors of the ``label_values(selector, label)`` variables."""
    dashboard = _load_dashboard(path)
    variables = template_variable_values(dashboard)
    queries = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        match = _LABEL_VALUES.match(_variable_query_text(variable))
        if match and match.group(1):
            queries.append(
                Query(f"variable {variable['name']}", substitute(match.group(1), variables))
            )
    return queries


def alert_queries(path: Path = RULES) -> list[Query]:
    """Every rule's expression (alerts and any recording rules)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    queries = []
    for group in document["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            kind = "alert" if "alert" in rule else "record"
            queries.append(Query(f"{kind} {name}", str(rule["expr"]).strip()))
    return queries


def all_queries() -> list[Query]:
    """Dashboard targets, dashboard variable selectors and alert expressions."""
    return dashboard_queries() + variable_queries() + alert_queries()


# --------------------------------------------------------------------------- PromQL
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)")
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "start",
        "end",
    }
)
_SELECTOR = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels excluded)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("{}", text)
    text = _BRACKETS.sub("[]", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or name.lower() in _KEYWORDS:
            continue  # a function or aggregation call, or a keyword
        names.add(name)
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """``(metric name, label matchers)`` of every ``name{...}`` selector."""
    return [(m.group(1), m.group(2)) for m in _SELECTOR.finditer(expr)]


# --------------------------------------------------------------------------- SPEC.md
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def spec_metric_names(path: Path = SPEC) -> set[str]:
    """Metric names in SPEC.md §4's table, with _bucket/_sum/_count for histograms."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## 4."))
    names: set[str] = set()
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[0] in ("metric", "") or set(cells[0]) <= {"-", ":"}:
            continue
        kind = cells[1]
        for raw in cells[0].split(","):
            name = raw.strip().strip("`")
            if not _METRIC_NAME.match(name):
                raise ValueError(f"SPEC.md §4: not a metric name: {name!r} in {line!r}")
            names.add(name)
            if "histogram" in kind:
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    if not names:
        raise ValueError(f"no metric table found in §4 of {path}")
    return names
