"""An embedded OTLP/HTTP-only metrics receiver for ``depwatch demo`` and tests.

It serves ``POST /v1/metrics`` (protobuf or JSON), decodes the
ExportMetricsServiceRequest, answers an empty ExportMetricsServiceResponse and
counts what it received. It has no gRPC receiver on purpose: pointed at as
``grpc`` on the gRPC port, it reproduces the incident's mismatch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb

__all__ = ["RECEIVER_STATS", "ReceiverStats", "create_app", "start", "stats"]

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
METRICS_PATH = "/v1/metrics"


@dataclass(slots=True)
class ReceiverStats:
    """What the receiver has seen (mutable: the receiver owns and updates it)."""

    #: every POST to the metrics path, decodable or not
    requests: int = 0
    #: requests that decoded as an ExportMetricsServiceRequest
    exports: int = 0
    resource_metrics: int = 0


RECEIVER_STATS = web.AppKey("otlp_receiver_stats", ReceiverStats)


def _quiet_logger() -> logging.Logger:
    """aiohttp logs every request it cannot parse (a gRPC client's HTTP/2 preface
    on this HTTP/1.1 port: the very mismatch the demo shows) with a traceback at
    ERROR; this receiver expects those, so its server logger drops them."""
    logger = logging.getLogger("exporter.demo_receiver.server")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


async def _export(request: web.Request) -> web.Response:
    counters = request.app[RECEIVER_STATS]
    counters.requests += 1
    media = request.content_type
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        return web.Response(status=415, text="content encoding not supported")
    body = await request.read()
    message = pb.ExportMetricsServiceRequest()
    try:
        if media == _PROTOBUF:
            message.ParseFromString(body)
        elif media == _JSON:
            json_format.Parse(body.decode("utf-8"), message, ignore_unknown_fields=True)
        else:
            return web.Response(status=415, text=f"use {_PROTOBUF} or {_JSON}")
    except (DecodeError, json_format.ParseError, UnicodeDecodeError):
        return web.Response(status=400, text="body is not an ExportMetricsServiceRequest")
    counters.exports += 1
    counters.resource_metrics += len(message.resource_metrics)
    response = pb.ExportMetricsServiceResponse()
    if media == _JSON:
        return web.Response(body=json_format.MessageToJson(response).encode(), content_type=_JSON)
    return web.Response(body=response.SerializeToString(), content_type=_PROTOBUF)


def create_app(counters: ReceiverStats | None = None) -> web.Application:
    app = web.Application()
    app[RECEIVER_STATS] = counters or ReceiverStats()
    app.router.add_post(METRICS_PATH, _export)
    return app


async def start(
    host: str = "127.0.0.1", port: int = 0, *, counters: ReceiverStats | None = None
) -> tuple[web.AppRunner, int]:
    """Start the receiver; returns the runner (``await runner.cleanup()`` to stop) and
    the bound port (useful with ``port=0``)."""
    runner = web.AppRunner(
        create_app(counters),
        access_log=None,
        handle_signals=False,
        logger=_quiet_logger(),
        shutdown_timeout=0.5,  # depwatch must stop within 2 s of SIGTERM
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)


def stats(runner: web.AppRunner) -> ReceiverStats:
    """The counters of a receiver started with :func:`start`."""
    app = runner.app
    assert isinstance(app, web.Application)
    return app[RECEIVER_STATS]
