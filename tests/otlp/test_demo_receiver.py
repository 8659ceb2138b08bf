"""The embedded OTLP/HTTP-only receiver used by ``depwatch demo``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb
from opentelemetry.proto.metrics.v1 import metrics_pb2

from exporter import demo_receiver
from exporter.otlp_config import parse_otlp_env
from exporter.otlp_mismatch import compute_mismatch
from exporter.otlp_targets import probe_collector

pytestmark = pytest.mark.timeout(30)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[web.AppRunner, int]]:
    runner, port = await demo_receiver.start("127.0.0.1", 0)
    try:
        yield runner, port
    finally:
        await runner.cleanup()


def one_metric_request() -> pb.ExportMetricsServiceRequest:
    request = pb.ExportMetricsServiceRequest()
    request.resource_metrics.append(metrics_pb2.ResourceMetrics())
    return request


@pytest.mark.asyncio
async def test_protobuf_export(
    receiver: tuple[web.AppRunner, int], http_session: aiohttp.ClientSession
) -> None:
    runner, port = receiver
    async with http_session.post(
        f"http://127.0.0.1:{port}/v1/metrics",
        data=one_metric_request().SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/x-protobuf"
        pb.ExportMetricsServiceResponse.FromString(await response.read())
    stats = demo_receiver.stats(runner)
    assert (stats.requests, stats.exports, stats.resource_metrics) == (1, 1, 1)


@pytest.mark.asyncio
async def test_json_export(
    receiver: tuple[web.AppRunner, int], http_session: aiohttp.ClientSession
) -> None:
    runner, port = receiver
    async with http_session.post(
        f"http://127.0.0.1:{port}/v1/metrics",
        data=json_format.MessageToJson(one_metric_request()),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 200
        json_format.Parse(await response.text(), pb.ExportMetricsServiceResponse())
    assert demo_receiver.stats(runner).exports == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/x-protobuf", b"\x0a\xff\xff\xff\x0f", 400),
        ("application/json", b"[not json", 400),
        ("text/plain", b"hello", 415),
    ],
)
async def test_bad_requests(
    receiver: tuple[web.AppRunner, int],
    http_session: aiohttp.ClientSession,
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    runner, port = receiver
    async with http_session.post(
        f"http://127.0.0.1:{port}/v1/metrics", data=body, headers={"Content-Type": content_type}
    ) as response:
        assert response.status == status
    stats = demo_receiver.stats(runner)
    assert (stats.requests, stats.exports) == (1, 0)


@pytest.mark.asyncio
async def test_demo_reproduces_the_incident(
    receiver: tuple[web.AppRunner, int], http_session: aiohttp.ClientSession
) -> None:
    """The application side configured as grpc on the gRPC port; only OTLP/HTTP answers."""
    runner, http_port = receiver
    with_grpc_port = web.AppRunner(web.Application())  # nothing speaks gRPC: use a free port
    await with_grpc_port.setup()
    site = web.TCPSite(with_grpc_port, "127.0.0.1", 0)
    await site.start()
    grpc_port = int(with_grpc_port.addresses[0][1])
    await with_grpc_port.cleanup()  # now refused

    settings = parse_otlp_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
    )
    assert settings is not None
    outcome = await probe_collector(
        settings, grpc_port=grpc_port, http_port=http_port, session=http_session, time_limit=2
    )
    mismatch = compute_mismatch(
        settings, outcome.results, grpc_port=grpc_port, http_port=http_port, observed_ports=None
    )
    assert mismatch["configured_unreachable"] is True
    assert demo_receiver.stats(runner).exports == 1
