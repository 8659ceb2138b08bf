"""The application's OTLP metrics exporter configuration, read from the OTEL_* environment.

Pure: no I/O, no logging. Implements the OpenTelemetry "OTLP Exporter Configuration"
rules for the metrics signal:

* ``OTEL_EXPORTER_OTLP_METRICS_<X>`` wins over ``OTEL_EXPORTER_OTLP_<X>`` (as a whole:
  per-signal headers replace the base headers, they are not merged); empty values
  count as unset.
* The per-signal endpoint is used as is (an empty path becomes ``/``); the base
  endpoint gets ``v1/metrics`` appended for ``http/protobuf`` and ``http/json``
  (``http://c:4318`` and ``http://c:4318/`` both give ``http://c:4318/v1/metrics``,
  ``http://c:4318/x/`` gives ``http://c:4318/x/v1/metrics``) and is used as is for
  ``grpc`` (whose exporters ignore the path).
* Protocol defaults to ``http/protobuf``; timeouts are integer milliseconds,
  default 10000; headers are W3C-baggage-like ``k=v,k2=v2`` with percent-decoding.
* TLS: an ``https://`` endpoint uses TLS, ``http://`` does not. An endpoint without
  a scheme (the incident's ``otel-collector-collector.otel-collector:4317``) is
  read as ``host:port``, as the Go SDK's gRPC exporter does: a gRPC exporter then
  uses TLS unless ``OTEL_EXPORTER_OTLP_[METRICS_]INSECURE=true``. HTTP exporters
  need a URL; depwatch is lenient and reads a scheme-less endpoint as ``http://``.
* Missing port: ``4317`` (grpc) / ``4318`` (http) for a scheme-less endpoint; the
  scheme's port (80 / 443) when a scheme is given, as every URL client does.
* Booleans follow the OTel spec: ``true`` / ``false`` in any case. Other values
  are rejected (the SDKs would silently read them as false).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

from exporter.model import OtlpConfigInfo

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_TIMEOUT_MS",
    "PROTOCOLS",
    "OtlpConfigError",
    "OtlpSettings",
    "format_hostport",
    "parse_otlp_env",
]

SIGNAL = "metrics"
PROTOCOLS: tuple[str, ...] = ("grpc", "http/protobuf", "http/json")
DEFAULT_PROTOCOL = "http/protobuf"
DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_PORTS: Mapping[str, int] = {"grpc": 4317, "http/protobuf": 4318, "http/json": 4318}
_SCHEME_PORTS = {"http": 80, "https": 443}
_BASE = "OTEL_EXPORTER_OTLP_"
_SIGNAL = "OTEL_EXPORTER_OTLP_METRICS_"
#: RFC 9110 token characters: what a header name may contain
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REDACTED = "<redacted>"


class OtlpConfigError(ValueError):
    """An OTEL_* variable holds a value depwatch cannot use.

    ``value`` is already safe to print: header values are never included.
    """

    def __init__(self, variable: str, value: str, accepted: str) -> None:
        self.variable = variable
        self.value = value
        self.accepted = accepted
        super().__init__(f"invalid {variable}={value!r}: accepted {accepted}")


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    """Where and how the application exports metrics over OTLP."""

    signal: str
    #: the URL the application would use (no credentials, no query string)
    url: str
    protocol: str
    host: str
    port: int
    #: request path for HTTP (with the query string, if any); "" for grpc
    path: str
    #: whether the configured protocol uses TLS
    tls: bool
    #: OTEL_EXPORTER_OTLP_[METRICS_]INSECURE as read (only gRPC without a scheme uses it)
    insecure: bool
    #: (name, value) pairs, names lowercased; values may be secrets: never log them
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_MS / 1000
    #: the scheme written in the endpoint ("http" / "https"), None when it had none
    scheme: str | None = None
    #: the variable the endpoint came from
    endpoint_variable: str = _BASE + "ENDPOINT"
    #: the variable the protocol came from, None when defaulted
    protocol_variable: str | None = None

    def config_info(self) -> OtlpConfigInfo:
        return OtlpConfigInfo(signal=self.signal, endpoint=self.url, protocol=self.protocol)

    def tls_for(self, protocol: str) -> bool:
        """Whether an exporter of ``protocol`` given this same configuration would use TLS.

        Used for the probes of the protocol the application is *not* configured for.
        """
        return _uses_tls(self.scheme, protocol, insecure=self.insecure)

    @property
    def hostport(self) -> str:
        return format_hostport(self.host, self.port)


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _uses_tls(scheme: str | None, protocol: str, *, insecure: bool) -> bool:
    if scheme is not None:
        return scheme == "https"
    return protocol == "grpc" and not insecure


def _get(env: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """(variable, value) of the per-signal variable, else the base one; empty = unset."""
    for name in (_SIGNAL + suffix, _BASE + suffix):
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _parse_bool(item: tuple[str, str] | None) -> bool:
    if item is None:
        return False
    name, value = item
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise OtlpConfigError(name, value, "true or false")


def _parse_timeout(item: tuple[str, str] | None) -> float:
    if item is None:
        return DEFAULT_TIMEOUT_MS / 1000
    name, value = item
    if not value.isascii() or not value.isdigit() or int(value) <= 0:
        raise OtlpConfigError(name, value, "a positive integer number of milliseconds")
    return int(value) / 1000


def _parse_headers(item: tuple[str, str] | None) -> tuple[tuple[str, str], ...]:
    if item is None:
        return ()
    name, raw = item
    accepted = "comma-separated key=value pairs with percent-encoded values"
    headers: list[tuple[str, str]] = []
    for position, entry in enumerate(raw.split(","), start=1):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        key = unquote(key).strip().lower()
        value = unquote(value).strip()
        if not sep or not _TOKEN.match(key):
            raise OtlpConfigError(name, _REDACTED, f"{accepted} (entry {position} is not)")
        if any(ch in value for ch in "\r\n\0"):
            raise OtlpConfigError(
                name, _REDACTED, f"{accepted} (entry {position}'s value has a control character)"
            )
        headers.append((key, value))
    return tuple(headers)


def _split_endpoint(name: str, value: str) -> tuple[SplitResult, str | None]:
    """Split an endpoint; a value without ``://`` is read as ``host[:port]``."""
    accepted = "a URL such as http://collector:4318, or host:port"
    shown = _redact_endpoint(value)
    scheme: str | None = None
    try:  # urlsplit itself raises ValueError on e.g. an unbalanced "[" of an IPv6 host
        parts = urlsplit(value if "://" in value else "//" + value)
    except ValueError:
        raise OtlpConfigError(name, shown, accepted) from None
    if "://" in value:
        scheme = parts.scheme.lower()
        if scheme not in _SCHEME_PORTS:
            raise OtlpConfigError(name, shown, accepted + " (scheme http or https)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
        host = parts.hostname
    except ValueError:
        raise OtlpConfigError(name, shown, accepted + " (port 1-65535)") from None
    if not host or parts.port == 0 or any(ch.isspace() for ch in value):
        raise OtlpConfigError(name, shown, accepted)
    return parts, scheme


def _redact_endpoint(value: str) -> str:
    """The endpoint for an error message: user-info and query may hold credentials."""
    rest = value.partition("://")[2] or value
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        value = value.replace(authority, _REDACTED + "@" + authority.rpartition("@")[2], 1)
    if "?" in value:
        value = value.partition("?")[0] + "?" + _REDACTED
    return value


def _endpoint_path(parts: SplitResult, *, per_signal: bool, protocol: str) -> str:
    if protocol == "grpc":
        return ""
    path = parts.path or "/"
    if not per_signal:
        path = path.rstrip("/") + "/v1/metrics"
    return path


def parse_otlp_env(env: Mapping[str, str]) -> OtlpSettings | None:
    """The metrics exporter settings, or None when no OTLP endpoint is configured.

    Raises :class:`OtlpConfigError` on a value that cannot be used.
    """
    endpoint = _get(env, "ENDPOINT")
    if endpoint is None:
        return None
    endpoint_variable, raw_endpoint = endpoint
    per_signal = endpoint_variable.startswith(_SIGNAL)

    protocol_item = _get(env, "PROTOCOL")
    protocol = DEFAULT_PROTOCOL
    if protocol_item is not None:
        protocol = protocol_item[1].lower()
        if protocol not in PROTOCOLS:
            raise OtlpConfigError(protocol_item[0], protocol_item[1], ", ".join(PROTOCOLS))

    insecure = _parse_bool(_get(env, "INSECURE"))
    parts, scheme = _split_endpoint(endpoint_variable, raw_endpoint)
    host = parts.hostname or ""
    if scheme is None:
        port = parts.port or DEFAULT_PORTS[protocol]
    else:
        port = parts.port or _SCHEME_PORTS[scheme]
    path = _endpoint_path(parts, per_signal=per_signal, protocol=protocol)

    tls = _uses_tls(scheme, protocol, insecure=insecure)
    shown_scheme = "https" if tls else "http"
    # Keep the port as written (none means the scheme's own) and drop credentials.
    netloc = format_hostport(host, port) if parts.port or scheme is None else _bracket(host)
    url = f"{shown_scheme}://{netloc}{path}"
    request_path = f"{path}?{parts.query}" if parts.query and path else path

    cert = _get(env, "CERTIFICATE")
    client_cert = _get(env, "CLIENT_CERTIFICATE")
    client_key = _get(env, "CLIENT_KEY")
    if (client_cert is None) != (client_key is None):
        given = (client_cert or client_key or ("", ""))[0]
        prefix = _SIGNAL if given.startswith(_SIGNAL) else _BASE
        missing = prefix + ("CLIENT_KEY" if client_key is None else "CLIENT_CERTIFICATE")
        raise OtlpConfigError(missing, "", f"a file path, since {given} is set")

    return OtlpSettings(
        signal=SIGNAL,
        url=url,
        protocol=protocol,
        host=host,
        port=port,
        path=request_path,
        tls=tls,
        insecure=insecure,
        headers=_parse_headers(_get(env, "HEADERS")),
        ca_file=cert[1] if cert else None,
        client_cert_file=client_cert[1] if client_cert else None,
        client_key_file=client_key[1] if client_key else None,
        timeout_seconds=_parse_timeout(_get(env, "TIMEOUT")),
        scheme=scheme,
        endpoint_variable=endpoint_variable,
        protocol_variable=protocol_item[0] if protocol_item else None,
    )


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
