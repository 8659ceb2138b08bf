"""compute_mismatch and describe on fixed results (pure)."""

from __future__ import annotations

import pytest

from exporter.model import OtlpProbeResult
from exporter.otlp_config import OtlpSettings, parse_otlp_env
from exporter.otlp_mismatch import MISMATCH_REASONS, compute_mismatch, describe

G, H = 4317, 4318


def cfg(endpoint: str, protocol: str | None = None, *, per_signal: bool = False) -> OtlpSettings:
    prefix = "OTEL_EXPORTER_OTLP_METRICS_" if per_signal else "OTEL_EXPORTER_OTLP_"
    env = {prefix + "ENDPOINT": endpoint}
    if protocol:
        env[prefix + "PROTOCOL"] = protocol
    settings = parse_otlp_env(env)
    assert settings is not None
    return settings


def res(
    protocol: str, port: int, reason: str | None = None, ip: str = "10.0.0.1"
) -> OtlpProbeResult:
    return OtlpProbeResult(f"{ip}:{port}", protocol, reason is None, reason=reason, port=port)


def flags(
    settings: OtlpSettings, results: list[OtlpProbeResult], observed: frozenset[int] | None = None
) -> dict[str, bool]:
    return compute_mismatch(settings, results, grpc_port=G, http_port=H, observed_ports=observed)


def test_all_keys_always_present() -> None:
    assert tuple(flags(cfg("http://c:4317", "grpc"), [])) == MISMATCH_REASONS
    assert flags(cfg("http://c:4317", "grpc"), []) == dict.fromkeys(MISMATCH_REASONS, False)


@pytest.mark.parametrize(
    ("endpoint", "protocol", "expected"),
    [
        ("http://c:4317", "grpc", False),
        ("http://c:4318", "grpc", True),
        ("http://c:4318", "http/protobuf", False),
        ("http://c:4317", "http/protobuf", True),
        ("http://c:4317", "http/json", True),
        ("http://c:9000", "grpc", False),
        ("http://c:9000", "http/protobuf", False),
    ],
)
def test_port_protocol(endpoint: str, protocol: str, expected: bool) -> None:
    assert flags(cfg(endpoint, protocol), [])["port_protocol"] is expected


def test_port_protocol_off_when_both_ports_are_equal() -> None:
    settings = cfg("http://c:4317", "grpc")
    mismatch = compute_mismatch(settings, [], grpc_port=4317, http_port=4317, observed_ports=None)
    assert mismatch["port_protocol"] is False


def test_configured_unreachable_needs_every_address_to_fail() -> None:
    settings = cfg("http://c:4317", "grpc")
    http_ok = res("http/protobuf", H)
    all_fail = [res("grpc", G, "connection_refused"), res("grpc", G, "timeout", ip="10.0.0.2")]
    one_works = [res("grpc", G, "connection_refused"), res("grpc", G, ip="10.0.0.2")]
    assert flags(settings, [*all_fail, http_ok])["configured_unreachable"] is True
    assert flags(settings, [*one_works, http_ok])["configured_unreachable"] is False


def test_configured_unreachable_needs_the_other_protocol_to_work_on_its_port() -> None:
    settings = cfg("http://c:4317", "grpc")
    failing = res("grpc", G, "connection_refused")
    assert (
        flags(settings, [failing, res("http/protobuf", H, "http_503")])["configured_unreachable"]
        is False
    )
    # http answering on some other port does not count
    assert flags(settings, [failing, res("http/protobuf", 9999)])["configured_unreachable"] is False
    assert flags(settings, [failing])["configured_unreachable"] is False
    assert flags(settings, [])["configured_unreachable"] is False


def test_configured_unreachable_for_http_json() -> None:
    settings = cfg("http://c:4318", "http/json")
    results = [res("http/json", H, "http_415"), res("grpc", G)]
    assert flags(settings, results)["configured_unreachable"] is True


def test_configured_port_outside_the_standard_ports() -> None:
    settings = cfg("http://c:9000", "grpc")
    failing = res("grpc", 9000, "connection_refused")
    # grpc working on 4317 is not "the other protocol": not this mismatch
    grpc_elsewhere = [failing, res("grpc", G), res("http/protobuf", H, "connection_refused")]
    assert flags(settings, grpc_elsewhere)["configured_unreachable"] is False
    http_works = [failing, res("grpc", G), res("http/protobuf", H)]
    assert flags(settings, http_works)["configured_unreachable"] is True


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (None, False),
        (frozenset(), False),
        (frozenset({4317}), False),
        (frozenset({4318}), True),
        (frozenset({4317, 4318}), True),
    ],
)
def test_observed_port(observed: frozenset[int] | None, expected: bool) -> None:
    settings = cfg("http://c:4317", "grpc")
    assert flags(settings, [], observed)["observed_port"] is expected


def test_describe_consistent_configuration() -> None:
    settings = cfg("http://collector:4318")
    results = [res("grpc", G), res("http/protobuf", H)]
    lines = describe(settings, results, flags(settings, results))
    assert lines == [
        "The application is configured to export metrics with http/protobuf to "
        "http://collector:4318/v1/metrics (endpoint from OTEL_EXPORTER_OTLP_ENDPOINT, "
        "protocol not set (http/protobuf by default)).",
        "grpc on port 4317: works (1 address).",
        "http/protobuf on port 4318 (configured): works (1 address).",
        "The configuration matches what the collector accepts.",
    ]


def test_describe_the_incident() -> None:
    settings = cfg("otel-collector-collector.otel-collector:4317", "grpc")
    results = [
        res("grpc", G, "connection_refused"),
        res("grpc", G, "connection_refused", ip="10.0.0.2"),
        res("http/protobuf", H),
        res("http/protobuf", H, ip="10.0.0.2"),
    ]
    observed = frozenset({H})
    mismatch = flags(settings, results, observed)
    lines = describe(settings, results, mismatch, observed_ports=observed)
    text = "\n".join(lines)
    assert "configured to export metrics with grpc to " in lines[0]
    assert "https://otel-collector-collector.otel-collector:4317" in lines[0]
    assert "The endpoint has no scheme" in text
    assert (
        "grpc on port 4317 (configured): fails on all 2 addresses: connection_refused (2)." in text
    )
    assert "http/protobuf on port 4318: works (2 addresses)." in text
    assert (
        "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and "
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector-collector.otel-collector:4318"
    ) in text
    assert "The application's exporter posts OTLP/HTTP to 4318" in text


def test_describe_port_protocol_suggests_both_fixes() -> None:
    settings = cfg("http://collector:4318", "grpc")
    results = [res("grpc", G), res("http/protobuf", H), res("grpc", H, "protocol")]
    lines = describe(settings, results, flags(settings, results))
    text = "\n".join(lines)
    assert "grpc is configured on port 4318, the OTLP/HTTP port" in text
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317 to keep grpc" in text
    assert (
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318"
        in text
    )


def test_describe_per_signal_suggestion_keeps_the_path() -> None:
    settings = cfg("http://collector:4317", "grpc", per_signal=True)
    results = [res("grpc", G, "connection_refused"), res("http/protobuf", H)]
    text = "\n".join(describe(settings, results, flags(settings, results)))
    assert (
        "set OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf and "
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://collector:4318/v1/metrics"
    ) in text


def test_describe_http_configured_grpc_works() -> None:
    settings = cfg("http://collector:4318", "http/protobuf")
    results = [res("grpc", G), res("http/protobuf", H, "connection_refused")]
    text = "\n".join(describe(settings, results, flags(settings, results)))
    assert (
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc and OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317"
        in text
    )


@pytest.mark.parametrize(
    ("reason", "hint"),
    [
        ("tls", "The TLS handshake failed"),
        ("dns", "does not resolve"),
        ("timeout", "unreachable from this pod"),
    ],
)
def test_describe_nothing_works(reason: str, hint: str) -> None:
    settings = cfg("collector:4317", "grpc")
    results = [res("grpc", G, reason), res("http/protobuf", H, reason)]
    text = "\n".join(describe(settings, results, flags(settings, results)))
    assert hint in text
    assert "matches" not in text


def test_describe_partial_failure() -> None:
    settings = cfg("http://collector:4317", "grpc")
    results = [res("grpc", G), res("grpc", G, "timeout", ip="10.0.0.2"), res("http/protobuf", H)]
    text = "\n".join(describe(settings, results, flags(settings, results)))
    assert (
        "grpc on port 4317 (configured): works on 1 of 2 addresses, fails on the others: timeout."
        in text
    )
