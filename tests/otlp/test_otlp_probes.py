"""Each OTLP probe against real in-process servers: one request, the right reason."""

from __future__ import annotations

import time

import aiohttp
import grpc
import pytest
import structlog
from structlog.testing import capture_logs
from support.otlp_receivers import (
    GARBAGE,
    NEVER,
    NOT_OTLP,
    OVERSIZED,
    GrpcReceiver,
    Receivers,
)

from exporter.model import OtlpProbeResult, Reason
from exporter.otlp_config import OtlpSettings, parse_otlp_env
from exporter.otlp_targets import OtlpTarget
from exporter.probes import otlp_grpc, otlp_http

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"


def cfg(protocol: str = "grpc", *, port: int = 4317, **env: str) -> OtlpSettings:
    scheme = env.pop("scheme", "http")
    settings = parse_otlp_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"{scheme}://{env.pop('host', HOST)}:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            **{f"OTEL_EXPORTER_OTLP_{k.upper()}": v for k, v in env.items()},
        }
    )
    assert settings is not None
    return settings


def target(port: int, protocol: str, *, tls: bool = False) -> OtlpTarget:
    return OtlpTarget(HOST, port, protocol, tls, "" if protocol == "grpc" else "/v1/metrics")


async def probe(
    port: int,
    protocol: str,
    session: aiohttp.ClientSession,
    *,
    settings: OtlpSettings | None = None,
    time_limit: float = 2.0,
    tls: bool = False,
) -> OtlpProbeResult:
    settings = settings or cfg(protocol, port=port)
    t = target(port, protocol, tls=tls)
    if protocol == "grpc":
        return await otlp_grpc.probe(t, settings, time_limit=time_limit)
    return await otlp_http.probe(t, settings, session=session, time_limit=time_limit)


PROTOCOLS = ["grpc", "http/protobuf"]


# --------------------------------------------------------------------------- success


@pytest.mark.asyncio
async def test_grpc_success_sends_one_export_with_headers(receivers: Receivers) -> None:
    receiver = await receivers.grpc(rejected=3)
    settings = cfg("grpc", port=receiver.port, headers="x-api-key=s3cr%20t,X-Tenant=t1")
    result = await otlp_grpc.probe(target(receiver.port, "grpc"), settings, time_limit=2)
    assert result.ok, result
    assert result.reason is None
    assert result.endpoint == f"{HOST}:{receiver.port}"
    assert result.port == receiver.port
    assert result.duration_seconds is not None
    assert result.duration_seconds > 0
    assert result.partial_success == "rejected_data_points=3: some points were dropped"
    assert receiver.requests == 1
    assert receiver.metadata[0]["x-api-key"] == "s3cr t"
    assert receiver.metadata[0]["x-tenant"] == "t1"
    assert receiver.metadata[0]["user-agent"].startswith("depwatch/")


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
async def test_http_success_posts_one_export(
    receivers: Receivers, http_session: aiohttp.ClientSession, protocol: str
) -> None:
    receiver = await receivers.http(rejected=2)
    settings = cfg(protocol, port=receiver.port, host="localhost", headers="authorization=Bearer x")
    result = await otlp_http.probe(
        target(receiver.port, protocol), settings, session=http_session, time_limit=2
    )
    assert result.ok, result
    assert result.partial_success == "rejected_data_points=2: some points were dropped"
    assert receiver.requests == 1
    sent = receiver.headers[0]
    assert sent["Content-Type"] == (
        "application/json" if protocol == "http/json" else "application/x-protobuf"
    )
    # dialled 127.0.0.1, but the request names the configured host, as the app's would
    assert sent["Host"] == f"localhost:{receiver.port}"
    assert sent["Authorization"] == "Bearer x"
    assert sent["Connection"] == "close"
    assert receiver.paths == ["/v1/metrics"]


@pytest.mark.asyncio
async def test_http_probes_use_a_fresh_connection_each_time(
    receivers: Receivers, http_session: aiohttp.ClientSession
) -> None:
    receiver = await receivers.http()
    for _ in range(3):
        assert (await probe(receiver.port, "http/protobuf", http_session)).ok
    assert receiver.requests == 3
    assert all(h["Connection"] == "close" for h in receiver.headers)


# --------------------------------------------------------------------------- transport failures


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connection_refused(
    receivers: Receivers, http_session: aiohttp.ClientSession, protocol: str
) -> None:
    result = await probe(receivers.closed(), protocol, http_session)
    assert not result.ok
    assert result.reason == Reason.CONNECTION_REFUSED
    assert result.duration_seconds is None


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_reset_on_accept(
    receivers: Receivers, http_session: aiohttp.ClientSession, protocol: str
) -> None:
    server = await receivers.reset()
    result = await probe(server.port, protocol, http_session)
    assert result.reason == Reason.CONNECTION_RESET, result
    assert server.connections == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_never_answers_times_out_within_the_deadline(
    receivers: Receivers, http_session: aiohttp.ClientSession, protocol: str
) -> None:
    server = await receivers.silent()
    deadline = 0.5
    started = time.monotonic()
    result = await probe(server.port, protocol, http_session, time_limit=deadline)
    elapsed = time.monotonic() - started
    assert result.reason == Reason.TIMEOUT, result
    assert deadline * 0.9 <= elapsed <= deadline * 1.1
    assert server.connections == 1


@pytest.mark.asyncio
async def test_http_receiver_that_never_answers(
    receivers: Receivers, http_session: aiohttp.ClientSession
) -> None:
    receiver = await receivers.http(body=NEVER)
    started = time.monotonic()
    result = await probe(receiver.port, "http/protobuf", http_session, time_limit=0.5)
    assert result.reason == Reason.TIMEOUT
    assert time.monotonic() - started <= 0.55
    assert receiver.requests == 1


@pytest.mark.asyncio
async def test_grpc_recovery_is_seen_at_once(
    receivers: Receivers, http_session: aiohttp.ClientSession
) -> None:
    """A refused connect leaves no reconnect backoff behind for the next probe."""
    sock_port = receivers.closed()
    assert (await probe(sock_port, "grpc", http_session)).reason == Reason.CONNECTION_REFUSED
    receivers.release(sock_port)
    receiver = GrpcReceiver()
    await receiver.start(sock_port)
    try:
        started = time.monotonic()
        result = await probe(sock_port, "grpc", http_session)
        assert result.ok, result
        assert time.monotonic() - started < 0.5
        assert receiver.requests == 1
    finally:
        await receiver.stop()


# --------------------------------------------------------------------------- answers


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [503, 429, 400, 404, 500, 302])
async def test_http_status(
    receivers: Receivers, http_session: aiohttp.ClientSession, status: int
) -> None:
    receiver = await receivers.http(status=status)
    result = await probe(receiver.port, "http/protobuf", http_session)
    assert result.reason == f"http_{status}"
    assert receiver.requests == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (grpc.StatusCode.UNAVAILABLE, "grpc_unavailable"),
        (grpc.StatusCode.UNAUTHENTICATED, "grpc_unauthenticated"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "grpc_resource_exhausted"),
        (grpc.StatusCode.UNIMPLEMENTED, "grpc_unimplemented"),
        (grpc.StatusCode.INTERNAL, "grpc_internal"),
    ],
)
async def test_grpc_status_codes(
    receivers: Receivers, http_session: aiohttp.ClientSession, code: grpc.StatusCode, reason: str
) -> None:
    receiver = await receivers.grpc(status=code)
    result = await probe(receiver.port, "grpc", http_session)
    assert result.reason == reason
    assert receiver.requests == 1


@pytest.mark.asyncio
async def test_grpc_unavailable_has_no_backoff_delay(
    receivers: Receivers, http_session: aiohttp.ClientSession
) -> None:
    receiver = await receivers.grpc(status=grpc.StatusCode.UNAVAILABLE)
    for n in range(1, 4):
        started = time.monotonic()
        result = await probe(receiver.port, "grpc", http_session, time_limit=5)
        assert result.reason == "grpc_unavailable"
        assert time.monotonic() - started < 0.3
        assert receiver.requests == n  # exactly one RPC per probe: no retry


@pytest.mark.asyncio
async def test_http_server_on_the_grpc_port_is_protocol(
    receivers: Receivers, http_session: aiohttp.ClientSession
) -> None:
    receiver = await receivers.http()
    result = await probe(receiver.port, "grpc", http_session)
    assert result.reason == Reason.PROTOCOL, result
    assert receiver.requests == 0


@pytest.mark.asyncio
async def test_grpc_server_on_the_http_port_is_protocol(
    receivers: Receivers, http_session: aiohttp.ClientSession
) -> None:
    receiver = await receivers.grpc()
    result = await probe(receiver.port, "http/protobuf", http_session)
    assert result.reason == Reason.PROTOCOL, result
    assert receiver.requests == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [404, 200, 400])
async def test_http2_server_that_is_not_grpc_is_protocol(
    receivers: Receivers, http_session: aiohttp.ClientSession, status: int
) -> None:
    server = await receivers.http2(status)
    result = await probe(server.port, "grpc", http_session)
    assert result.reason == Reason.PROTOCOL, result
    assert server.requests == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [GARBAGE, NOT_OTLP, OVERSIZED])
@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
async def test_http_answer_that_is_not_otlp_is_protocol(
    receivers: Receivers, http_session: aiohttp.ClientSession, body: str, protocol: str
) -> None:
    receiver = await receivers.http(body=body)
    result = await probe(receiver.port, protocol, http_session)
    assert result.reason == Reason.PROTOCOL, result
    assert receiver.requests == 1


# --------------------------------------------------------------------------- logging


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_failures_logged_at_debug_without_secrets(
    receivers: Receivers, http_session: aiohttp.ClientSession, protocol: str
) -> None:
    port = receivers.closed()
    settings = cfg(protocol, port=port, headers="authorization=Bearer%20topsecret")
    t = target(port, protocol)
    with capture_logs() as logs:
        log = structlog.get_logger()
        if protocol == "grpc":
            result = await otlp_grpc.probe(t, settings, time_limit=1, log=log)
        else:
            result = await otlp_http.probe(t, settings, session=http_session, time_limit=1, log=log)
    assert result.reason == Reason.CONNECTION_REFUSED
    assert [(e["log_level"], e["reason"], e["endpoint"]) for e in logs] == [
        ("debug", "connection_refused", f"{HOST}:{port}")
    ]
    assert "topsecret" not in repr(logs)
    assert "topsecret" not in repr(result)


@pytest.mark.asyncio
async def test_success_is_not_logged(receivers: Receivers) -> None:
    receiver = await receivers.grpc()
    with capture_logs() as logs:
        result = await otlp_grpc.probe(
            target(receiver.port, "grpc"), cfg(port=receiver.port), log=structlog.get_logger()
        )
    assert result.ok
    assert logs == []
