"""The Helm chart, rendered by Helm's own engine (helm-python-sdk) and validated.

Every ``charts/depwatch/ci/*-values.yaml`` scenario is rendered with
``helm_python.Chart.load(path).render(values, name=..., namespace=...)`` and
linted with ``helm_python.lint``. Built-in kinds are validated with
kubernetes-validate (strict: unknown fields fail), the Prometheus Operator
kinds against the CRD shapes in ``monitoring_schemas``. Sidecar scenarios are
also rendered through a small application chart built from the worked example
in the chart's README, which includes the ``depwatch.sidecarContainer``
template the way a real application chart would.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from deploy import dashboard_queries as dq
from deploy.monitoring_schemas import SCHEMAS, validate_custom_resource

CHART_DIR = dq.REPO_ROOT / "charts" / "depwatch"
SCENARIOS = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
K8S_VERSION = "1.33.0"  # recent, and >= 1.29 for native sidecars
RELEASE = "gateway"
NAMESPACE = "shop"
UID = 65532

# Kinds this chart renders per scenario (the application chart adds a Deployment
# in sidecar mode).
EXPECTED_KINDS = {
    "existing-web-config-podmonitor-values.yaml": [
        "ConfigMap",
        "Deployment",
        "PodMonitor",
        "PrometheusRule",
        "ServiceAccount",
    ],
    "monitors-off-values.yaml": ["Deployment", "Service", "ServiceAccount"],
    "native-sidecar-values.yaml": ["ConfigMap", "PodMonitor", "PrometheusRule"],
    "sidecar-servicemonitor-values.yaml": [
        "ConfigMap",
        "PrometheusRule",
        "Service",
        "ServiceMonitor",
    ],
    "sidecar-values.yaml": ["ConfigMap", "PodMonitor", "PrometheusRule"],
    "standalone-aws-values.yaml": [
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ],
    "standalone-values.yaml": [
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ],
    "web-config-values.yaml": [
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ],
}


# --------------------------------------------------------------------------- helpers


def _load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    assert isinstance(values, dict), path
    return values


def _objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """Parsed objects of a render, NOTES.txt and empty documents left out."""
    objects = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document.setdefault("metadata", {})
                objects.append(document)
    return objects


def _validate(obj: dict[str, Any]) -> None:
    if obj["kind"] in SCHEMAS:
        validate_custom_resource(obj)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def _kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _readme_example() -> str:
    """The application Deployment template of the chart README's worked example."""
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL):
        if 'include "depwatch.sidecarContainer"' in block and "kind: Deployment" in block:
            return str(block)
    raise AssertionError("README.md has no worked example of the sidecar templates")


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def app_chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An application chart ("gateway") with depwatch as its dependency."""
    root = tmp_path_factory.mktemp("app") / "gateway"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(
        "apiVersion: v2\nname: gateway\nversion: 1.3.1\nappVersion: 1.3.1\n"
        "dependencies:\n  - name: depwatch\n    version: 0.1.0\n"
        "    repository: file://../depwatch\n"
    )
    (root / "values.yaml").write_text("depwatch:\n  mode: sidecar\n")
    (root / "templates" / "deployment.yaml").write_text(_readme_example())
    shutil.copytree(CHART_DIR, root / "charts" / "depwatch")
    return root


@pytest.fixture(scope="module")
def app_chart(app_chart_dir: Path) -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(app_chart_dir) as loaded:
        yield loaded


class Rendered:
    """One scenario's render: the chart's objects and, in sidecar mode, the app's."""

    def __init__(
        self,
        values: dict[str, Any],
        chart_objects: list[dict[str, Any]],
        app_objects: list[dict[str, Any]] | None,
    ) -> None:
        self.values = values
        self.merged: dict[str, Any] = {}
        self.chart_objects = chart_objects
        self.app_objects = app_objects

    @property
    def sidecar(self) -> bool:
        return self.merged["mode"] == "sidecar"

    @property
    def workload(self) -> dict[str, Any]:
        """The Deployment whose pod carries depwatch."""
        if self.sidecar:
            assert self.app_objects is not None
            return _one(self.app_objects, "Deployment", f"{RELEASE}-gateway")
        return _one(self.chart_objects, "Deployment")

    @property
    def pod(self) -> dict[str, Any]:
        pod: dict[str, Any] = self.workload["spec"]["template"]
        return pod

    @property
    def container(self) -> dict[str, Any]:
        spec = self.pod["spec"]
        name = self.merged["sidecar"]["containerName"]
        found = [
            c
            for key in ("containers", "initContainers")
            for c in spec.get(key, [])
            if c["name"] == name
        ]
        assert len(found) == 1, f"depwatch container {name!r} appears {len(found)} times"
        return found[0]


@pytest.fixture(scope="module", params=SCENARIOS, ids=lambda p: p.name)
def scenario(
    request: pytest.FixtureRequest, chart: helm_python.Chart, app_chart: helm_python.Chart
) -> Rendered:
    values = _load_values(request.param)
    chart_objects = _objects(chart.render(values, name=RELEASE, namespace=NAMESPACE))
    app_objects = None
    merged = chart.merge_values(values)
    if merged["mode"] == "sidecar":
        app_objects = _objects(
            app_chart.render({"depwatch": values}, name=RELEASE, namespace=NAMESPACE)
        )
    rendered = Rendered(values, chart_objects, app_objects)
    rendered.merged = merged
    rendered.name = request.param.name  # type: ignore[attr-defined]
    return rendered


# --------------------------------------------------------------------------- chart basics


def test_scenarios_exist() -> None:
    names = {p.name for p in SCENARIOS}
    assert names == set(EXPECTED_KINDS), "update EXPECTED_KINDS with the scenario files"


def test_chart_metadata(chart: helm_python.Chart) -> None:
    metadata = chart.metadata
    assert metadata["name"] == "depwatch"
    assert metadata["apiVersion"] == "v2"
    init = (dq.REPO_ROOT / "exporter" / "__init__.py").read_text(encoding="utf-8")
    version = re.search(r'__version__ = "([^"]+)"', init)
    assert version, "exporter/__init__.py has no __version__"
    assert metadata["appVersion"] == version.group(1)
    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
    default_tag = re.search(r'define "depwatch.defaultImageTag" -}}\n(\S+)\n', helpers)
    assert default_tag, "depwatch.defaultImageTag not found"
    assert default_tag.group(1) == metadata["appVersion"]


def test_one_resource_per_template() -> None:
    for template in (CHART_DIR / "templates").glob("*.yaml"):
        text = template.read_text(encoding="utf-8")
        assert len(re.findall(r"^kind: ", text, re.M)) == 1, template.name


def test_schema_describes_every_value(chart: helm_python.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    assert schema["additionalProperties"] is False
    assert schema["properties"]["mode"]["enum"] == ["standalone", "sidecar"]
    assert schema["properties"]["log"]["properties"]["format"]["enum"] == ["json", "console"]
    for key, prop in schema["properties"].items():
        assert prop.get("description"), key
        for sub, subprop in prop.get("properties", {}).items():
            assert subprop.get("description"), f"{key}.{sub}"
    # every default value is covered by the schema
    assert set(chart.values) <= set(schema["properties"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "bogus"}, "/mode"),
        ({"modee": "sidecar"}, "modee"),
        ({"log": {"format": "xml"}}, "/log/format"),
        ({"log": {"level": "verbose"}}, "/log/level"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"webConfig": {"scheme": "https"}}, "/webConfig/scheme"),
        ({"metricsPort": {"name": "depwatch-metrics"}}, "/metricsPort/name"),
        ({"metricsPort": {"port": 70000}}, "/metricsPort/port"),
        ({"env": {"DEPWATCH_LOG_LEVEL": "debug"}}, "DEPWATCH_LOG_LEVEL"),
        ({"env": {"REDIS_PASSWORD": "hunter2"}}, "REDIS_PASSWORD"),
        ({"sidecar": {"native": "yes"}}, "/sidecar/native"),
        ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval"),
        ({"service": {"type": "ExternalName"}}, "/service/type"),
        ({"envFrom": [{"configMap": {"name": "x"}}]}, "/envFrom/0"),
    ],
)
def test_invalid_values_are_rejected_by_the_schema(
    chart: helm_python.Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as raised:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(raised.value)
    report = helm_python.lint(CHART_DIR, values, namespace=NAMESPACE)
    assert report["errors"], "helm lint must reject the values too"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}, "not both"),
        ({"webConfig": {"existingSecret": "x", "config": {"basic_auth_users": {}}}}, "not both"),
        (
            {"serviceMonitor": {"enabled": True}, "service": {"enabled": False}},
            "needs service.enabled",
        ),
    ],
)
def test_contradictory_values_fail_rendering(
    chart: helm_python.Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_sidecar_template_refuses_standalone_mode(app_chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r'set depwatch\.mode to "sidecar"'):
        app_chart.render({"depwatch": {"mode": "standalone"}}, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(("kube_version", "refused"), [("v1.28.9", True), ("v1.29.0", False)])
def test_native_sidecar_needs_kubernetes_1_29(
    app_chart_dir: Path, tmp_path: Path, kube_version: str, refused: bool
) -> None:
    # render() has no kube version option (lint's is ignored by `fail`, which
    # Helm's lint mode only logs): hand the template a cluster version instead.
    app = tmp_path / "gateway"
    shutil.copytree(app_chart_dir, app)
    template = app / "templates" / "deployment.yaml"
    capabilities = f'(dict "KubeVersion" (dict "Version" "{kube_version}"))'
    text = template.read_text().replace(
        '"Capabilities" .Capabilities', f'"Capabilities" {capabilities}'
    )
    assert capabilities in text
    template.write_text(text)
    values = {"depwatch": {"sidecar": {"native": True}}}
    with helm_python.Chart.load(app) as chart:
        if refused:
            with pytest.raises(helm_python.HelmRenderError, match=r"needs Kubernetes >= 1\.29"):
                chart.render(values, name=RELEASE, namespace=NAMESPACE)
        else:
            assert _objects(chart.render(values, name=RELEASE, namespace=NAMESPACE))


def test_strict_validation_is_not_vacuous(scenario: Rendered) -> None:
    """kubernetes-validate in strict mode rejects an unknown field."""
    broken = json.loads(json.dumps(scenario.workload))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContextt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------- per scenario


def test_scenario_lints(scenario: Rendered) -> None:
    report = helm_python.lint(
        CHART_DIR, scenario.values, strict=True, namespace=NAMESPACE, kube_version=f"v{K8S_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_scenario_objects_validate(scenario: Rendered) -> None:
    objects = scenario.chart_objects + (scenario.app_objects or [])
    assert objects
    for obj in objects:
        _validate(obj)


def test_scenario_kinds(scenario: Rendered) -> None:
    assert _kinds(scenario.chart_objects) == EXPECTED_KINDS[scenario.name]  # type: ignore[attr-defined]
    if scenario.sidecar:
        assert scenario.app_objects is not None
        app_only = [
            o
            for o in scenario.app_objects
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "depwatch"
        ]
        assert _kinds(app_only) == ["Deployment"]
        # the subchart renders in the application's release exactly what it renders alone
        assert _kinds(scenario.app_objects) == sorted(
            [*EXPECTED_KINDS[scenario.name], "Deployment"]  # type: ignore[attr-defined]
        )
    else:
        assert "Deployment" in _kinds(scenario.chart_objects)


def test_scenario_objects_are_labelled_and_namespaced(scenario: Rendered) -> None:
    for obj in scenario.chart_objects:
        metadata = obj["metadata"]
        assert metadata.get("namespace"), (obj["kind"], metadata["name"])
        labels = metadata["labels"]
        assert labels["app.kubernetes.io/name"] == "depwatch"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert "depwatch" in metadata["name"]


def test_container_is_hardened(scenario: Rendered) -> None:
    container = scenario.container
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == UID and isinstance(security["runAsUser"], int)
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security.get("privileged") in (None, False)
    assert container["resources"]["limits"]["memory"]
    if not scenario.sidecar:
        pod = scenario.pod["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        assert "hostNetwork" not in pod and "hostPID" not in pod


def test_probes_and_port(scenario: Rendered) -> None:
    container = scenario.container
    port = scenario.merged["metricsPort"]
    assert container["ports"] == [
        {"name": port["name"], "containerPort": port["port"], "protocol": "TCP"}
    ]
    scheme = scenario.merged["webConfig"]["scheme"]
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    if scenario.merged["startupProbe"]["enabled"]:
        expected["startupProbe"] = "/readyz"
    else:
        assert "startupProbe" not in container
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {
            "path": path,
            "port": port["name"],
            "scheme": scheme,
        }, probe
    env = {e["name"]: e for e in container["env"]}
    assert len(env) == len(container["env"]), "duplicate env names"
    assert env["DEPWATCH_LISTEN_ADDRESS"]["value"] == f":{port['port']}"
    assert env["DEPWATCH_LOG_FORMAT"]["value"] == scenario.merged["log"]["format"]
    if "metricsPort" not in scenario.values:
        assert port == {"name": "metrics", "port": 9478}


def test_sidecar_placement(scenario: Rendered) -> None:
    container = scenario.container
    spec = scenario.pod["spec"]
    name = container["name"]
    if not scenario.sidecar:
        assert "restartPolicy" not in container
        return
    native = scenario.merged["sidecar"]["native"]
    init_names = [c["name"] for c in spec.get("initContainers", [])]
    names = [c["name"] for c in spec["containers"]]
    if native:
        assert name in init_names and name not in names
        assert container["restartPolicy"] == "Always"
    else:
        assert name in names and name not in init_names
        assert "restartPolicy" not in container
    labels = scenario.pod["metadata"]["labels"]
    assert _matches(scenario.merged["sidecar"]["podLabels"], labels)


def test_env_is_passed_through(scenario: Rendered) -> None:
    container = scenario.container
    assert container.get("envFrom", []) == scenario.merged["envFrom"]
    env = {e["name"]: e for e in container["env"]}
    for name, value in scenario.merged["env"].items():
        assert env[name]["value"] == str(value)
    for entry in scenario.merged["extraEnv"]:
        assert env[entry["name"]] == entry


def test_volumes_exist_for_every_mount(scenario: Rendered) -> None:
    volumes = {v["name"]: v for v in scenario.pod["spec"]["volumes"]}
    for mount in scenario.container["volumeMounts"]:
        assert mount["name"] in volumes, mount
    assert any(m["mountPath"] == "/tmp" for m in scenario.container["volumeMounts"])


def test_web_config(scenario: Rendered) -> None:
    web = scenario.merged["webConfig"]
    env = {e["name"]: e.get("value") for e in scenario.container["env"]}
    volumes = {v["name"]: v for v in scenario.pod["spec"]["volumes"]}
    if not (web["config"] or web["existingSecret"]):
        assert "DEPWATCH_WEB_CONFIG_FILE" not in env
        assert not [o for o in scenario.chart_objects if o["kind"] == "Secret"]
        return
    assert env["DEPWATCH_WEB_CONFIG_FILE"] == f"/etc/depwatch/web-config/{web['secretKey']}"
    mounts = {m["name"]: m for m in scenario.container["volumeMounts"]}
    assert mounts["depwatch-web-config"]["mountPath"] == "/etc/depwatch/web-config"
    secret_name = volumes["depwatch-web-config"]["secret"]["secretName"]
    if web["existingSecret"]:
        assert secret_name == web["existingSecret"]
        assert not [o for o in scenario.chart_objects if o["kind"] == "Secret"]
    else:
        secret = _one(scenario.chart_objects, "Secret", secret_name)
        decoded = base64.b64decode(secret["data"][web["secretKey"]])
        assert yaml.safe_load(decoded) == web["config"]


def test_monitors_select_the_pods(scenario: Rendered) -> None:
    pod_labels = scenario.pod["metadata"]["labels"]
    port_name = scenario.merged["metricsPort"]["name"]
    scheme = scenario.merged["webConfig"]["scheme"].lower()
    for monitor in [o for o in scenario.chart_objects if o["kind"] == "PodMonitor"]:
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert _matches(spec["selector"]["matchLabels"], pod_labels)
        (endpoint,) = spec["podMetricsEndpoints"]
        assert endpoint["port"] == port_name and endpoint["path"] == "/metrics"
        assert endpoint["scheme"] == scheme
    services = [o for o in scenario.chart_objects if o["kind"] == "Service"]
    for service in services:
        assert _matches(service["spec"]["selector"], pod_labels)
        assert service["spec"]["ports"][0]["targetPort"] == port_name
    for monitor in [o for o in scenario.chart_objects if o["kind"] == "ServiceMonitor"]:
        (service,) = services
        spec = monitor["spec"]
        assert _matches(spec["selector"]["matchLabels"], service["metadata"]["labels"])
        (endpoint,) = spec["endpoints"]
        assert endpoint["port"] == service["spec"]["ports"][0]["name"]
        assert endpoint["scheme"] == scheme
    # the DepwatchDown alert finds the job these monitors produce
    for monitor in [o for o in scenario.chart_objects if o["kind"].endswith("Monitor")]:
        assert re.fullmatch(".*depwatch.*", monitor["metadata"]["name"])


def test_rules_and_dashboard_are_the_generated_copies(scenario: Rendered) -> None:
    rules = [o for o in scenario.chart_objects if o["kind"] == "PrometheusRule"]
    if scenario.merged["prometheusRule"]["enabled"]:
        (rule,) = rules
        source = yaml.safe_load(dq.RULES.read_text(encoding="utf-8"))
        assert rule["spec"]["groups"] == source["groups"]
        assert _matches(
            scenario.merged["prometheusRule"]["additionalLabels"], rule["metadata"]["labels"]
        )
    else:
        assert not rules
    maps = [o for o in scenario.chart_objects if o["kind"] == "ConfigMap"]
    if scenario.merged["dashboard"]["enabled"]:
        (dashboard,) = maps
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        expected_ns = scenario.merged["dashboard"]["namespace"] or NAMESPACE
        assert dashboard["metadata"]["namespace"] == expected_ns
        assert json.loads(dashboard["data"]["depwatch.json"]) == json.loads(
            dq.DASHBOARD.read_text(encoding="utf-8")
        )
    else:
        assert not maps
