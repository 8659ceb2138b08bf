"""The matrix: which receivers run, times how the application is configured, gives the
probe results (``otlp_export_probe_up`` / reasons) and the mismatch flags.

Real receivers on 127.0.0.1; "the gRPC port" and "the HTTP port" are the ports the
receivers got (or a refusing port when that receiver is absent), passed as
grpc_port / http_port exactly as DEPWATCH_OTLP_GRPC_PORT / _HTTP_PORT would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import pytest
from support.otlp_receivers import Receivers

from exporter.otlp_config import parse_otlp_env
from exporter.otlp_mismatch import compute_mismatch, describe
from exporter.otlp_targets import probe_collector

pytestmark = pytest.mark.timeout(30)

OK, REFUSED, PROTOCOL = "ok", "connection_refused", "protocol"
RECEIVERS = {  # name -> (gRPC receiver runs, HTTP receiver runs)
    "grpc_only": (True, False),
    "http_only": (False, True),
    "both": (True, True),
    "none": (False, False),
}


@dataclass(frozen=True)
class Case:
    protocol: str
    #: "grpc" or "http": which receiver port the endpoint names
    port_of: str
    #: (protocol, port_of) -> outcome, per receiver set
    probes: dict[str, dict[tuple[str, str], str]]
    #: receiver set -> (port_protocol, configured_unreachable)
    mismatch: dict[str, tuple[bool, bool]]


CASES = {
    "grpc on the gRPC port": Case(
        "grpc", "grpc",
        probes={
            "grpc_only": {("grpc", "grpc"): OK, ("http/protobuf", "http"): REFUSED},
            "http_only": {("grpc", "grpc"): REFUSED, ("http/protobuf", "http"): OK},
            "both": {("grpc", "grpc"): OK, ("http/protobuf", "http"): OK},
            "none": {("grpc", "grpc"): REFUSED, ("http/protobuf", "http"): REFUSED},
        },
        mismatch={"grpc_only": (False, False), "http_only": (False, True),
                  "both": (False, False), "none": (False, False)},
    ),
    "http/protobuf on the HTTP port": Case(
        "http/protobuf", "http",
        probes={
            "grpc_only": {("grpc", "grpc"): OK, ("http/protobuf", "http"): REFUSED},
            "http_only": {("grpc", "grpc"): REFUSED, ("http/protobuf", "http"): OK},
            "both": {("grpc", "grpc"): OK, ("http/protobuf", "http"): OK},
            "none": {("grpc", "grpc"): REFUSED, ("http/protobuf", "http"): REFUSED},
        },
        mismatch={"grpc_only": (False, True), "http_only": (False, False),
                  "both": (False, False), "none": (False, False)},
    ),
    "grpc on the HTTP port": Case(
        "grpc", "http",
        probes={
            "grpc_only": {("grpc", "grpc"): OK, ("http/protobuf", "http"): REFUSED,
                          ("grpc", "http"): REFUSED},
            "http_only": {("grpc", "grpc"): REFUSED, ("http/protobuf", "http"): OK,
                          ("grpc", "http"): PROTOCOL},
            "both": {("grpc", "grpc"): OK, ("http/protobuf", "http"): OK,
                     ("grpc", "http"): PROTOCOL},
            "none": {("grpc", "grpc"): REFUSED, ("http/protobuf", "http"): REFUSED,
                     ("grpc", "http"): REFUSED},
        },
        mismatch={"grpc_only": (True, False), "http_only": (True, True),
                  "both": (True, True), "none": (True, False)},
    ),
    "http/protobuf on the gRPC port": Case(
        "http/protobuf", "grpc",
        probes={
            "grpc_only": {("grpc", "grpc"): OK, ("http/protobuf", "http"): REFUSED,
                          ("http/protobuf", "grpc"): PROTOCOL},
            "http_only": {("grpc", "grpc"): REFUSED, ("http/protobuf", "http"): OK,
                          ("http/protobuf", "grpc"): REFUSED},
            "both": {("grpc", "grpc"): OK, ("http/protobuf", "http"): OK,
                     ("http/protobuf", "grpc"): PROTOCOL},
            "none": {("grpc", "grpc"): REFUSED, ("http/protobuf", "http"): REFUSED,
                     ("http/protobuf", "grpc"): REFUSED},
        },
        mismatch={"grpc_only": (True, True), "http_only": (True, False),
                  "both": (True, True), "none": (True, False)},
    ),
}  # fmt: skip


def environment(case: Case, port: int, variables: str) -> dict[str, str]:
    if variables == "base":
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": case.protocol,
        }
    # per-signal: used as is, so an HTTP endpoint spells out the path
    path = "" if case.protocol == "grpc" else "/v1/metrics"
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://unused.invalid:1",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json" if case.protocol == "grpc" else "grpc",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{port}{path}",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": case.protocol,
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("variables", ["base", "per-signal"])
@pytest.mark.parametrize("running", list(RECEIVERS))
@pytest.mark.parametrize("case_name", list(CASES))
async def test_matrix(
    receivers: Receivers,
    http_session: aiohttp.ClientSession,
    case_name: str,
    running: str,
    variables: str,
) -> None:
    case = CASES[case_name]
    grpc_runs, http_runs = RECEIVERS[running]
    grpc_receiver = await receivers.grpc() if grpc_runs else None
    http_receiver = await receivers.http() if http_runs else None
    ports = {
        "grpc": grpc_receiver.port if grpc_receiver else receivers.closed(),
        "http": http_receiver.port if http_receiver else receivers.closed(),
    }
    settings = parse_otlp_env(environment(case, ports[case.port_of], variables))
    assert settings is not None
    assert (settings.protocol, settings.port) == (case.protocol, ports[case.port_of])

    outcome = await probe_collector(
        settings, grpc_port=ports["grpc"], http_port=ports["http"], session=http_session,
        time_limit=2,
    )  # fmt: skip

    got = {(r.protocol, r.port): (r.reason or OK) for r in outcome.results}
    expected = {(p, ports[port_of]): v for (p, port_of), v in case.probes[running].items()}
    assert got == expected
    for r in outcome.results:
        assert r.ok is (r.reason is None)
        assert r.endpoint == f"127.0.0.1:{r.port}"

    mismatch = compute_mismatch(
        settings, outcome.results, grpc_port=ports["grpc"], http_port=ports["http"],
        observed_ports=None,
    )  # fmt: skip
    port_protocol, unreachable = case.mismatch[running]
    assert mismatch == {
        "port_protocol": port_protocol,
        "configured_unreachable": unreachable,
        "observed_port": False,
    }

    # exactly one request per probe that reached a receiver: no hidden retries
    if grpc_receiver is not None:
        assert grpc_receiver.requests == 1
    if http_receiver is not None:
        assert http_receiver.requests == 1
        assert http_receiver.paths == ["/v1/metrics"]

    lines = describe(
        settings, outcome.results, mismatch, grpc_port=ports["grpc"], http_port=ports["http"]
    )
    intro = f"The application is configured to export metrics with {case.protocol} "
    assert lines[0].startswith(intro)
    if unreachable:
        assert any(line.startswith("Mismatch: the configured") for line in lines)


@pytest.mark.asyncio
async def test_per_signal_endpoint_without_path_posts_to_root(
    receivers: Receivers, http_session: aiohttp.ClientSession
) -> None:
    """The per-signal endpoint is used as is: no /v1/metrics is added, as the app would not."""
    receiver = await receivers.http(status=404)
    settings = parse_otlp_env(
        {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{receiver.port}"}
    )
    assert settings is not None
    grpc_port = receivers.closed()
    outcome = await probe_collector(
        settings, grpc_port=grpc_port, http_port=receiver.port, session=http_session, time_limit=2
    )
    assert receiver.paths == ["/"]
    assert {(r.protocol, r.reason) for r in outcome.results} == {
        ("grpc", "connection_refused"),
        ("http/protobuf", "http_404"),
    }


@pytest.mark.asyncio
async def test_the_incident_against_an_http_only_receiver(
    receivers: Receivers, http_session: aiohttp.ClientSession
) -> None:
    """grpc configured on the gRPC port with a scheme-less endpoint; only OTLP/HTTP runs;
    the pod's live sockets go to the HTTP port."""
    receiver = await receivers.http()
    grpc_port = receivers.closed()
    settings = parse_otlp_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
    )
    assert settings is not None
    outcome = await probe_collector(
        settings, grpc_port=grpc_port, http_port=receiver.port, session=http_session, time_limit=2
    )
    observed = frozenset({receiver.port})
    mismatch = compute_mismatch(
        settings, outcome.results, grpc_port=grpc_port, http_port=receiver.port,
        observed_ports=observed,
    )  # fmt: skip
    assert mismatch == {
        "port_protocol": False,
        "configured_unreachable": True,
        "observed_port": True,
    }
    lines = describe(
        settings, outcome.results, mismatch, grpc_port=grpc_port, http_port=receiver.port,
        observed_ports=observed,
    )  # fmt: skip
    text = "\n".join(lines)
    refused = "fails on the 1 address: connection_refused"
    assert f"grpc on port {grpc_port} (configured): {refused}" in text
    assert f"http/protobuf on port {receiver.port}: works" in text
    assert (
        "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and "
        f"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{receiver.port}"
    ) in text
    assert "ignore OTEL_EXPORTER_OTLP_PROTOCOL" in text
