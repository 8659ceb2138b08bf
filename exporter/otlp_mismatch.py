"""Configuration versus reality for the OTLP exporter: the mismatch flags and the
plain-English explanation in the ``check`` report. Pure functions.

The incident this exists for: the deployment said ``grpc`` on 4317, the code
posted OTLP/HTTP to 4318, and only ``connection reset by peer`` in the logs said
anything. The Go OTLP exporters do not read OTEL_EXPORTER_OTLP_PROTOCOL at all
(the imported package fixes the protocol), so the configuration alone proves
nothing; the probes and the pod's socket table show what actually works and
what is actually used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from exporter.model import OtlpProbeResult
from exporter.otlp_config import OtlpSettings, format_hostport

__all__ = ["MISMATCH_REASONS", "compute_mismatch", "describe"]

#: the ``reason`` label values of otlp_exporter_config_mismatch, always all present
MISMATCH_REASONS: tuple[str, ...] = ("port_protocol", "configured_unreachable", "observed_port")
_HTTP = ("http/protobuf", "http/json")


def _other(settings: OtlpSettings, *, grpc_port: int, http_port: int) -> tuple[str, int]:
    """The protocol the application is not configured for, and that protocol's port."""
    if settings.protocol == "grpc":
        return "http/protobuf", http_port
    return "grpc", grpc_port


def _matches(result: OtlpProbeResult, protocol: str) -> bool:
    if protocol in _HTTP:
        return result.protocol in _HTTP
    return result.protocol == protocol


def compute_mismatch(
    settings: OtlpSettings,
    results: Sequence[OtlpProbeResult],
    *,
    grpc_port: int,
    http_port: int,
    observed_ports: frozenset[int] | None,
) -> dict[str, bool]:
    """The three mismatch flags (all keys always present).

    * ``port_protocol``: grpc configured on the HTTP port, or HTTP on the gRPC port;
    * ``configured_unreachable``: every probe of the configured protocol on the
      configured port failed while the other protocol works on its own port;
    * ``observed_port``: the pod's live sockets to the collector use a port other
      than the configured one (False when the socket table is not available).
    """
    if grpc_port == http_port:
        port_protocol = False
    elif settings.protocol == "grpc":
        port_protocol = settings.port == http_port
    else:
        port_protocol = settings.port == grpc_port

    configured = [r for r in results if r.protocol == settings.protocol and r.port == settings.port]
    other_protocol, other_port = _other(settings, grpc_port=grpc_port, http_port=http_port)
    other_works = any(
        r.ok and r.port == other_port and _matches(r, other_protocol) for r in results
    )
    unreachable = bool(configured) and not any(r.ok for r in configured) and other_works

    observed = observed_ports is not None and any(p != settings.port for p in observed_ports)
    return {
        "port_protocol": port_protocol,
        "configured_unreachable": unreachable,
        "observed_port": observed,
    }


def _summary(group: Sequence[OtlpProbeResult]) -> str:
    ok = sum(r.ok for r in group)
    total = len(group)
    noun = "address" if total == 1 else "addresses"
    if ok == total:
        return f"works ({total} {noun})"
    reasons = Counter(r.reason or "other" for r in group if not r.ok)
    why = ", ".join(f"{reason} ({n})" if n > 1 else reason for reason, n in reasons.most_common())
    if ok == 0:
        return f"fails on {'the' if total == 1 else 'all'} {total} {noun}: {why}"
    return f"works on {ok} of {total} {noun}, fails on the others: {why}"


def _variables(settings: OtlpSettings) -> tuple[str, str]:
    """The endpoint and protocol variables to change (the ones the application sets)."""
    per_signal = "_METRICS_" in settings.endpoint_variable
    protocol_variable = settings.protocol_variable or (
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL" if per_signal else "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    return settings.endpoint_variable, protocol_variable


def _suggested_endpoint(settings: OtlpSettings, protocol: str, port: int) -> str:
    scheme = "https" if settings.tls_for(protocol) else "http"
    url = f"{scheme}://{format_hostport(settings.host, port)}"
    if protocol in _HTTP and "_METRICS_" in settings.endpoint_variable:
        url += "/v1/metrics"  # the per-signal endpoint is used as is
    return url


def _switch(settings: OtlpSettings, protocol: str, port: int) -> str:
    endpoint_variable, protocol_variable = _variables(settings)
    return (
        f"set {protocol_variable}={protocol} and "
        f"{endpoint_variable}={_suggested_endpoint(settings, protocol, port)}"
    )


def describe(
    settings: OtlpSettings,
    results: Sequence[OtlpProbeResult],
    mismatch: dict[str, bool],
    *,
    grpc_port: int = 4317,
    http_port: int = 4318,
    observed_ports: frozenset[int] | None = None,
) -> list[str]:
    """Plain-English lines for the ``check`` report: what is configured, what works,
    and what to change."""
    lines = _configuration_lines(settings)
    groups: dict[tuple[str, int], list[OtlpProbeResult]] = {}
    for r in results:
        groups.setdefault((r.protocol, r.port), []).append(r)
    for (protocol, port), group in groups.items():
        mark = " (configured)" if (protocol, port) == (settings.protocol, settings.port) else ""
        lines.append(f"{protocol} on port {port}{mark}: {_summary(group)}.")

    ports = {"grpc": grpc_port, "http": http_port}
    if mismatch.get("configured_unreachable"):
        lines.append(_unreachable_line(settings, mismatch, ports))
    if mismatch.get("port_protocol"):
        lines.append(_port_protocol_line(settings, ports))
    if mismatch.get("observed_port") and observed_ports:
        lines.append(_observed_line(settings, observed_ports, ports))
    configured = groups.get((settings.protocol, settings.port), [])
    configured_ok = any(r.ok for r in configured)
    if configured and not configured_ok and not mismatch.get("configured_unreachable"):
        lines.append(_unreachable_hint(settings, configured))
    if not any(mismatch.values()) and configured_ok:
        lines.append("The configuration matches what the collector accepts.")
    return lines


def _configuration_lines(settings: OtlpSettings) -> list[str]:
    source = f"endpoint from {settings.endpoint_variable}, " + (
        f"protocol from {settings.protocol_variable}"
        if settings.protocol_variable
        else "protocol not set (http/protobuf by default)"
    )
    lines = [
        f"The application is configured to export metrics with {settings.protocol} "
        f"to {settings.url} ({source})."
    ]
    if settings.scheme is None:
        lines.append(
            "The endpoint has no scheme: a gRPC exporter reads it as host:port and uses TLS "
            "unless OTEL_EXPORTER_OTLP_INSECURE=true; an HTTP exporter needs a full URL "
            "(depwatch assumed http://)."
        )
    return lines


def _unreachable_line(
    settings: OtlpSettings, mismatch: dict[str, bool], ports: dict[str, int]
) -> str:
    other_protocol, other_port = _other(settings, grpc_port=ports["grpc"], http_port=ports["http"])
    line = (
        f"Mismatch: the configured {settings.protocol} on port {settings.port} fails while "
        f"{other_protocol} on port {other_port} works. To fix, "
        f"{_switch(settings, other_protocol, other_port)}"
    )
    if not mismatch.get("port_protocol"):
        line += f"; or make the collector accept {settings.protocol} on port {settings.port}"
    return line + "."


def _port_protocol_line(settings: OtlpSettings, ports: dict[str, int]) -> str:
    grpc_configured = settings.protocol == "grpc"
    right_port = ports["grpc"] if grpc_configured else ports["http"]
    other_protocol = "http/protobuf" if grpc_configured else "grpc"
    endpoint_variable, _ = _variables(settings)
    keep = _suggested_endpoint(settings, settings.protocol, right_port)
    return (
        f"Mismatch: {settings.protocol} is configured on port {settings.port}, the "
        f"{'OTLP/HTTP' if grpc_configured else 'OTLP/gRPC'} port. To fix, set "
        f"{endpoint_variable}={keep} to keep {settings.protocol}, or "
        f"{_switch(settings, other_protocol, settings.port)}."
    )


def _observed_line(
    settings: OtlpSettings, observed_ports: frozenset[int], ports: dict[str, int]
) -> str:
    shown = ", ".join(str(p) for p in sorted(observed_ports))
    noun = "port" if len(observed_ports) == 1 else "ports"
    line = (
        f"Mismatch: the pod's live connections to the collector use {noun} {shown}, "
        f"not the configured {settings.port}."
    )
    used = sorted(observed_ports - {settings.port})
    if used == [ports["http"]] and settings.protocol == "grpc":
        line += f" The application's exporter posts OTLP/HTTP to {ports['http']}: "
        switch = _switch(settings, "http/protobuf", ports["http"])
    elif used == [ports["grpc"]] and settings.protocol in _HTTP:
        line += f" The application's exporter speaks gRPC to {ports['grpc']}: "
        switch = _switch(settings, "grpc", ports["grpc"])
    else:
        return line
    return line + (
        "the code uses a different exporter than the configuration says (the Go OTLP "
        "exporters ignore OTEL_EXPORTER_OTLP_PROTOCOL; the imported package, "
        "otlpmetricgrpc or otlpmetrichttp, decides). Make the configuration say what "
        f"the code does: {switch}."
    )


def _unreachable_hint(settings: OtlpSettings, configured: Sequence[OtlpProbeResult]) -> str:
    reasons = {r.reason for r in configured}
    text = (
        f"The configured {settings.protocol} on port {settings.port} fails and the other "
        "protocol does not work either: the collector is unreachable from this pod."
    )
    if "tls" in reasons:
        text += (
            " The TLS handshake failed: check OTEL_EXPORTER_OTLP_CERTIFICATE, or, if the "
            "collector does not use TLS, use an http:// endpoint"
            + (
                " (or OTEL_EXPORTER_OTLP_INSECURE=true)."
                if settings.scheme is None and settings.protocol == "grpc"
                else "."
            )
        )
    elif "dns" in reasons:
        text += f" The name {settings.host} does not resolve."
    return text
