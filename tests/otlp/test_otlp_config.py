"""OTEL_EXPORTER_OTLP_* rules for the metrics signal, table-driven.

Rows marked "spec" come from the examples of the OpenTelemetry specification,
"OTLP Exporter Configuration" (Endpoint URLs for OTLP/HTTP, Specify Protocol).
"""

from __future__ import annotations

from typing import Any

import pytest

from exporter.model import OtlpConfigInfo
from exporter.otlp_config import OtlpConfigError, parse_otlp_env

B = "OTEL_EXPORTER_OTLP_"
M = "OTEL_EXPORTER_OTLP_METRICS_"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # spec example 1: the base endpoint gets /v1/metrics
        ({B + "ENDPOINT": "http://collector:4318"},
         ("http://collector:4318/v1/metrics", "http/protobuf", "collector", 4318, "/v1/metrics",
         False)),
        # spec example 2: the per-signal endpoint is used as is
        ({B + "ENDPOINT": "http://collector:4318",
          M + "ENDPOINT": "https://collector.example.com/v1/metrics"},
         ("https://collector.example.com/v1/metrics", "http/protobuf", "collector.example.com",
         443, "/v1/metrics", True)),
        # spec example 2 (traces half, applied to metrics): per-signal without a path -> "/"
        ({M + "ENDPOINT": "http://collector:4318"},
         ("http://collector:4318/", "http/protobuf", "collector", 4318, "/", False)),
        # spec example 3: a base path is kept, a trailing slash is not doubled
        ({B + "ENDPOINT": "http://collector:4318/mycollector/"},
         ("http://collector:4318/mycollector/v1/metrics", "http/protobuf", "collector", 4318,
         "/mycollector/v1/metrics", False)),
        # spec example 3: the per-signal one keeps its trailing slash
        ({B + "ENDPOINT": "http://collector:4318/mycollector/",
          M + "ENDPOINT": "https://collector.example.com/v1/metrics/"},
         ("https://collector.example.com/v1/metrics/", "http/protobuf", "collector.example.com",
         443, "/v1/metrics/", True)),
        ({B + "ENDPOINT": "http://collector:4318/"},
         ("http://collector:4318/v1/metrics", "http/protobuf", "collector", 4318, "/v1/metrics",
         False)),
        # http/json follows the same URL rules
        ({B + "ENDPOINT": "http://collector:4318", B + "PROTOCOL": "http/json"},
         ("http://collector:4318/v1/metrics", "http/json", "collector", 4318, "/v1/metrics",
         False)),
        # grpc: the endpoint is used as is, the path is not used
        ({B + "ENDPOINT": "http://collector:4317", B + "PROTOCOL": "grpc"},
         ("http://collector:4317", "grpc", "collector", 4317, "", False)),
        ({B + "ENDPOINT": "https://collector:4317/ignored", B + "PROTOCOL": "grpc"},
         ("https://collector:4317", "grpc", "collector", 4317, "", True)),
        # the incident: no scheme, grpc -> host:port with TLS (INSECURE unset)
        ({B + "ENDPOINT": "otel-collector-collector.otel-collector:4317", B + "PROTOCOL": "grpc"},
         ("https://otel-collector-collector.otel-collector:4317", "grpc",
         "otel-collector-collector.otel-collector", 4317, "", True)),
        ({B + "ENDPOINT": "collector:4317", B + "PROTOCOL": "grpc", B + "INSECURE": "true"},
         ("http://collector:4317", "grpc", "collector", 4317, "", False)),
        ({B + "ENDPOINT": "collector:4317", B + "PROTOCOL": "grpc", B + "INSECURE": "true",
          M + "INSECURE": "false"},
         ("https://collector:4317", "grpc", "collector", 4317, "", True)),
        # INSECURE applies only without a scheme
        ({B + "ENDPOINT": "https://collector:4317", B + "PROTOCOL": "grpc", B + "INSECURE": "TRUE"},
         ("https://collector:4317", "grpc", "collector", 4317, "", True)),
        ({B + "ENDPOINT": "http://collector:4317", B + "PROTOCOL": "grpc", B + "INSECURE": "false"},
         ("http://collector:4317", "grpc", "collector", 4317, "", False)),
        # default ports without a scheme: 4317 grpc, 4318 http; with a scheme: the scheme's
        ({B + "ENDPOINT": "collector", B + "PROTOCOL": "grpc", B + "INSECURE": "true"},
         ("http://collector:4317", "grpc", "collector", 4317, "", False)),
        ({B + "ENDPOINT": "collector"},
         ("http://collector:4318/v1/metrics", "http/protobuf", "collector", 4318, "/v1/metrics",
         False)),
        ({B + "ENDPOINT": "http://collector"},
         ("http://collector/v1/metrics", "http/protobuf", "collector", 80, "/v1/metrics", False)),
        # per-signal protocol wins; protocol is case-insensitive
        ({B + "ENDPOINT": "http://c:4318", B + "PROTOCOL": "grpc", M + "PROTOCOL": "HTTP/Protobuf"},
         ("http://c:4318/v1/metrics", "http/protobuf", "c", 4318, "/v1/metrics", False)),
        ({B + "ENDPOINT": "http://c:4317", M + "PROTOCOL": "grpc"},
         ("http://c:4317", "grpc", "c", 4317, "", False)),
        # empty values are unset
        ({B + "ENDPOINT": "http://c:4318", M + "ENDPOINT": "", M + "PROTOCOL": " "},
         ("http://c:4318/v1/metrics", "http/protobuf", "c", 4318, "/v1/metrics", False)),
        # IPv6 literals
        ({B + "ENDPOINT": "http://[::1]:4318"},
         ("http://[::1]:4318/v1/metrics", "http/protobuf", "::1", 4318, "/v1/metrics", False)),
        ({B + "ENDPOINT": "[fd00::1]:4317", B + "PROTOCOL": "grpc", B + "INSECURE": "true"},
         ("http://[fd00::1]:4317", "grpc", "fd00::1", 4317, "", False)),
        # credentials never reach the URL label; the query is sent but not shown
        ({M + "ENDPOINT": "https://user:pw@collector:4318/v1/metrics?token=abc"},
         ("https://collector:4318/v1/metrics", "http/protobuf", "collector", 4318,
         "/v1/metrics?token=abc", True)),
    ],
)  # fmt: skip
def test_endpoint_rules(env: dict[str, str], expected: tuple[Any, ...]) -> None:
    url, protocol, host, port, path, tls = expected
    settings = parse_otlp_env(env)
    assert settings is not None
    assert (settings.url, settings.protocol, settings.host, settings.port) == (
        url, protocol, host, port,
    )  # fmt: skip
    assert settings.path == path
    assert settings.tls is tls
    assert settings.signal == "metrics"
    assert settings.config_info() == OtlpConfigInfo("metrics", url, protocol)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {B + "ENDPOINT": ""},
        {B + "PROTOCOL": "grpc", B + "HEADERS": "a=b"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318"},
    ],
)
def test_no_endpoint_means_no_otlp(env: dict[str, str]) -> None:
    assert parse_otlp_env(env) is None


def test_endpoint_variable_recorded() -> None:
    base = parse_otlp_env({B + "ENDPOINT": "http://c:4318", B + "PROTOCOL": "http/protobuf"})
    signal = parse_otlp_env({B + "ENDPOINT": "http://c:4318", M + "ENDPOINT": "http://d:4318"})
    default = parse_otlp_env({B + "ENDPOINT": "http://c:4318"})
    assert base is not None
    assert signal is not None
    assert default is not None
    assert base.endpoint_variable == B + "ENDPOINT"
    assert base.protocol_variable == B + "PROTOCOL"
    assert signal.endpoint_variable == M + "ENDPOINT"
    assert default.protocol_variable is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # spec example of the format
        ("api-key=key,other-config-value=value",
         (("api-key", "key"), ("other-config-value", "value"))),
        # values are percent-decoded (W3C baggage), whitespace trimmed, names lowercased
        ("Authorization=Bearer%20abc%3D%3D , x-tenant = t1",
         (("authorization", "Bearer abc=="), ("x-tenant", "t1"))),
        ("a=b=c", (("a", "b=c"),)),
        ("a=b,,", (("a", "b"),)),
        ("a=", (("a", ""),)),
        ("a=+b", (("a", "+b"),)),  # '+' is not a space: percent-decoding, not form-decoding
    ],
)  # fmt: skip
def test_headers(raw: str, expected: tuple[tuple[str, str], ...]) -> None:
    settings = parse_otlp_env({B + "ENDPOINT": "http://c:4318", B + "HEADERS": raw})
    assert settings is not None
    assert settings.headers == expected


def test_per_signal_headers_replace_base_headers() -> None:
    settings = parse_otlp_env(
        {B + "ENDPOINT": "http://c:4318", B + "HEADERS": "a=1,b=2", M + "HEADERS": "c=3"}
    )
    assert settings is not None
    assert settings.headers == (("c", "3"),)


def test_header_values_are_not_in_repr() -> None:
    settings = parse_otlp_env({B + "ENDPOINT": "http://c:4318", B + "HEADERS": "k=s3cr3t"})
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({}, 10.0),
        ({B + "TIMEOUT": "500"}, 0.5),
        ({B + "TIMEOUT": "500", M + "TIMEOUT": "2500"}, 2.5),
    ],
)
def test_timeout_milliseconds(env: dict[str, str], seconds: float) -> None:
    settings = parse_otlp_env({B + "ENDPOINT": "http://c:4318", **env})
    assert settings is not None
    assert settings.timeout_seconds == seconds


def test_certificate_files() -> None:
    settings = parse_otlp_env(
        {
            B + "ENDPOINT": "https://c:4318",
            B + "CERTIFICATE": "/etc/base.pem",
            M + "CERTIFICATE": "/etc/metrics.pem",
            B + "CLIENT_CERTIFICATE": "/etc/client.pem",
            B + "CLIENT_KEY": "/etc/client.key",
        }
    )
    assert settings is not None
    assert settings.ca_file == "/etc/metrics.pem"
    assert (settings.client_cert_file, settings.client_key_file) == (
        "/etc/client.pem", "/etc/client.key",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "variable", "shown"),
    [
        ({B + "PROTOCOL": "grpc/json"}, B + "PROTOCOL", "grpc/json"),
        ({M + "PROTOCOL": "http"}, M + "PROTOCOL", "http"),
        ({B + "TIMEOUT": "10s"}, B + "TIMEOUT", "10s"),
        ({B + "TIMEOUT": "0"}, B + "TIMEOUT", "0"),
        ({M + "TIMEOUT": "-5"}, M + "TIMEOUT", "-5"),
        ({B + "TIMEOUT": "1.5"}, B + "TIMEOUT", "1.5"),
        ({B + "INSECURE": "yes"}, B + "INSECURE", "yes"),
        ({B + "INSECURE": "1"}, B + "INSECURE", "1"),
        ({B + "CLIENT_KEY": "/k"}, B + "CLIENT_CERTIFICATE", ""),
    ],
)
def test_invalid_values(env: dict[str, str], variable: str, shown: str) -> None:
    with pytest.raises(OtlpConfigError) as caught:
        parse_otlp_env({B + "ENDPOINT": "http://c:4318", **env})
    error = caught.value
    assert error.variable == variable
    assert error.value == shown
    assert str(error).startswith(f"invalid {variable}=")
    assert "accepted" in str(error)


@pytest.mark.parametrize(
    "endpoint",
    ["ftp://c:4318", "unix:///run/otel.sock", "http://", "http://c:99999", "http://c:0",
     "http://c:port", "c 4318", "http://:4318"],
)  # fmt: skip
def test_invalid_endpoints(endpoint: str) -> None:
    with pytest.raises(OtlpConfigError) as caught:
        parse_otlp_env({B + "ENDPOINT": endpoint})
    assert caught.value.variable == B + "ENDPOINT"


def test_endpoint_errors_hide_credentials() -> None:
    with pytest.raises(OtlpConfigError) as caught:
        parse_otlp_env({M + "ENDPOINT": "ftp://user:hunter2@c:4318/x?token=sesame"})
    assert "hunter2" not in str(caught.value)
    assert "sesame" not in str(caught.value)
    assert caught.value.variable == M + "ENDPOINT"


@pytest.mark.parametrize("raw", ["novalue", "=v", "a b=c", "a=b,secret-token", "a=line%0Abreak"])
def test_invalid_headers_never_show_values(raw: str) -> None:
    with pytest.raises(OtlpConfigError) as caught:
        parse_otlp_env({B + "ENDPOINT": "http://c:4318", M + "HEADERS": raw})
    assert caught.value.variable == M + "HEADERS"
    message = str(caught.value)
    for secret in ("novalue", "secret-token", "break", "a b"):
        assert secret not in message
    assert "<redacted>" in message


@pytest.mark.parametrize(
    ("env", "grpc_tls", "http_tls"),
    [
        ({B + "ENDPOINT": "https://c:4317", B + "PROTOCOL": "grpc"}, True, True),
        ({B + "ENDPOINT": "http://c:4317", B + "PROTOCOL": "grpc"}, False, False),
        ({B + "ENDPOINT": "c:4317", B + "PROTOCOL": "grpc"}, True, False),
        ({B + "ENDPOINT": "c:4317", B + "PROTOCOL": "grpc", B + "INSECURE": "true"}, False, False),
    ],
)
def test_tls_per_protocol(env: dict[str, str], grpc_tls: bool, http_tls: bool) -> None:
    """What an exporter of the *other* protocol would do with the same configuration."""
    settings = parse_otlp_env(env)
    assert settings is not None
    assert settings.tls_for("grpc") is grpc_tls
    assert settings.tls_for("http/protobuf") is http_tls
