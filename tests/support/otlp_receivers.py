"""Real in-process OTLP receivers and misbehaving TCP servers for the OTLP probe tests.

Everything listens on 127.0.0.1, port 0, and counts what it received, so tests
can assert that a probe sent exactly one request (no hidden retries).

* :class:`GrpcReceiver` - a ``grpc.aio`` server implementing MetricsService/Export
  (decodes the real protobuf), optionally answering a status code, optionally TLS.
* :class:`HttpReceiver` - an aiohttp OTLP/HTTP receiver with failure modes:
  a status code, a garbage / non-OTLP / oversized body, never answering.
* :class:`ResetServer` - accepts and resets at once (SO_LINGER 0).
* :class:`SilentServer` - accepts, reads, never answers.
* :class:`Http2StatusServer` - speaks just enough HTTP/2 to answer every request with
  a bare ``:status`` (an HTTP/2 server that is not gRPC).
* :func:`closed_port` - a port bound without listening: connections are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc
import trustme
from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as pb_grpc

__all__ = [
    "GrpcReceiver",
    "Http2StatusServer",
    "HttpReceiver",
    "Receivers",
    "ResetServer",
    "SilentServer",
    "TlsFiles",
    "closed_port",
    "make_tls_files",
]

HOST = "127.0.0.1"
#: the certificates name only this host name (not the IP): verification must use it
TLS_NAME = "localhost"


@dataclass(frozen=True)
class TlsFiles:
    """A CA, a server certificate for TLS_NAME signed by it, and an unrelated CA."""

    ca_file: str
    #: a CA that did not sign the certificate
    wrong_ca_file: str
    cert_file: str
    key_file: str
    cert_pem: bytes
    key_pem: bytes
    #: a client certificate and key signed by the same CA (for mutual TLS)
    client_cert_file: str = ""
    client_key_file: str = ""
    ca_pem: bytes = b""


def make_tls_files(directory: str) -> TlsFiles:
    ca = trustme.CA()
    leaf = ca.issue_cert(TLS_NAME)
    paths = [os.path.join(directory, n) for n in ("ca.pem", "wrong-ca.pem", "srv.pem", "srv.key")]
    ca.cert_pem.write_to_path(paths[0])
    trustme.CA().cert_pem.write_to_path(paths[1])
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    with open(paths[2], "wb") as f:
        f.write(chain)
    with open(paths[3], "wb") as f:
        f.write(key)
    client = ca.issue_cert("depwatch-client")
    client_cert, client_key = (
        os.path.join(directory, "client.pem"),
        os.path.join(directory, "client.key"),
    )
    client.cert_chain_pems[0].write_to_path(client_cert)
    client.private_key_pem.write_to_path(client_key)
    return TlsFiles(
        *paths, cert_pem=chain, key_pem=key, client_cert_file=client_cert,
        client_key_file=client_key, ca_pem=ca.cert_pem.bytes(),
    )  # fmt: skip


def closed_port() -> socket.socket:
    """A socket bound to a free port but not listening: connecting is refused.

    Keep the socket open while the port is in use (and close it afterwards)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    return sock


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("tests.otlp_receivers.aiohttp")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


# --------------------------------------------------------------------------- gRPC


class _MetricsService(pb_grpc.MetricsServiceServicer):
    def __init__(self, receiver: GrpcReceiver) -> None:
        self.receiver = receiver

    async def Export(  # the generated servicer's method name
        self, request: pb.ExportMetricsServiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportMetricsServiceResponse:
        receiver = self.receiver
        receiver.requests += 1
        receiver.metadata.append(dict(context.invocation_metadata() or ()))
        if receiver.status is not None:
            await context.abort(receiver.status, "receiver configured to fail")
        response = pb.ExportMetricsServiceResponse()
        if receiver.rejected:
            response.partial_success.rejected_data_points = receiver.rejected
            response.partial_success.error_message = "some points were dropped"
        return response


@dataclass
class GrpcReceiver:
    """A real OTLP/gRPC metrics receiver."""

    status: grpc.StatusCode | None = None
    tls: TlsFiles | None = None
    #: with tls: demand a client certificate signed by the CA
    require_client_cert: bool = False
    #: report a partial success with this many rejected data points
    rejected: int = 0
    requests: int = 0
    metadata: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    _server: grpc.aio.Server | None = None

    async def start(self, port: int = 0) -> int:
        server = grpc.aio.server()
        pb_grpc.add_MetricsServiceServicer_to_server(_MetricsService(self), server)
        if self.tls is not None:
            credentials = grpc.ssl_server_credentials(
                [(self.tls.key_pem, self.tls.cert_pem)],
                root_certificates=self.tls.ca_pem if self.require_client_cert else None,
                require_client_auth=self.require_client_cert,
            )
            self.port = server.add_secure_port(f"{HOST}:{port}", credentials)
        else:
            self.port = server.add_insecure_port(f"{HOST}:{port}")
        await server.start()
        self._server = server
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


# --------------------------------------------------------------------------- HTTP

#: body modes of HttpReceiver
OK, GARBAGE, NOT_OTLP, OVERSIZED, NEVER = "ok", "garbage", "not_otlp", "oversized", "never"


@dataclass
class HttpReceiver:
    """A real OTLP/HTTP metrics receiver (protobuf and JSON) with failure modes."""

    status: int = 200
    body: str = OK
    tls: TlsFiles | None = None
    rejected: int = 0
    requests: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.headers.append(dict(request.headers))
        self.paths.append(request.path_qs)
        raw = await request.read()
        json = request.content_type == "application/json"
        message = pb.ExportMetricsServiceRequest()
        if json:
            json_format.Parse(raw.decode(), message)
        else:
            message.ParseFromString(raw)
        if self.body == NEVER:
            await self._release.wait()
            raise web.HTTPServiceUnavailable
        if self.status != 200:
            return web.Response(status=self.status, text="receiver configured to fail")
        if self.body == GARBAGE:
            # a length-delimited field claiming more bytes than follow: not decodable
            return web.Response(body=b"\x0a\xff\xff\xff\x0f", content_type=request.content_type)
        if self.body == NOT_OTLP:
            return web.Response(text="<html>hello</html>", content_type="text/html")
        if self.body == OVERSIZED:
            return web.Response(body=b"\x00" * (1024 * 1024), content_type=request.content_type)
        response = pb.ExportMetricsServiceResponse()
        if self.rejected:
            response.partial_success.rejected_data_points = self.rejected
            response.partial_success.error_message = "some points were dropped"
        if json:
            return web.Response(
                text=json_format.MessageToJson(response), content_type="application/json"
            )
        return web.Response(
            body=response.SerializeToString(), content_type="application/x-protobuf"
        )

    async def start(self) -> int:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, logger=_quiet_logger(), shutdown_timeout=0
        )
        await runner.setup()
        ssl_context = None
        if self.tls is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        site = web.TCPSite(runner, HOST, 0, ssl_context=ssl_context)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# --------------------------------------------------------------------------- raw TCP


class _RawServer:
    """An asyncio TCP server on 127.0.0.1:0 that counts accepted connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._on_connect, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None


class ResetServer(_RawServer):
    """Accepts, then closes with SO_LINGER 0: the client sees a TCP RST."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


class SilentServer(_RawServer):
    """Accepts and reads whatever comes, never answers."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


class Http2StatusServer(_RawServer):
    """Minimal cleartext HTTP/2: answers each request with only ``:status`` (no gRPC).

    ``status`` must have an HPACK static-table entry (200, 204, 206, 304, 400, 404, 500).
    """

    _HPACK: ClassVar[dict[int, int]] = {
        200: 0x88,
        204: 0x89,
        206: 0x8A,
        304: 0x8B,
        400: 0x8C,
        404: 0x8D,
        500: 0x8E,
    }

    def __init__(self, status: int = 404) -> None:
        super().__init__()
        self.header_block = bytes([self._HPACK[status]])
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(24)  # client connection preface
        writer.write(_frame(4, 0, 0))  # our SETTINGS
        while True:
            header = await reader.readexactly(9)
            length, kind, flags = int.from_bytes(header[:3], "big"), header[3], header[4]
            stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
            await reader.readexactly(length)
            if kind == 4 and not flags & 1:  # SETTINGS -> ACK
                writer.write(_frame(4, 1, 0))
            elif kind == 1:  # HEADERS -> :status, END_STREAM | END_HEADERS
                self.requests += 1
                writer.write(_frame(1, 0x5, stream, self.header_block))
            await writer.drain()


# --------------------------------------------------------------------------- fixture helper


class Receivers:
    """Starts servers for one test and stops them all at its end (the ``receivers`` fixture)."""

    def __init__(self) -> None:
        self._started: list[GrpcReceiver | HttpReceiver | _RawServer] = []
        self._closed: dict[int, socket.socket] = {}

    async def grpc(self, **kwargs: Any) -> GrpcReceiver:
        receiver = GrpcReceiver(**kwargs)
        await receiver.start()
        self._started.append(receiver)
        return receiver

    async def http(self, **kwargs: Any) -> HttpReceiver:
        receiver = HttpReceiver(**kwargs)
        await receiver.start()
        self._started.append(receiver)
        return receiver

    async def reset(self) -> ResetServer:
        server = ResetServer()
        await self._raw(server)
        return server

    async def silent(self) -> SilentServer:
        server = SilentServer()
        await self._raw(server)
        return server

    async def http2(self, status: int = 404) -> Http2StatusServer:
        server = Http2StatusServer(status)
        await self._raw(server)
        return server

    def closed(self) -> int:
        """A port that refuses connections until :meth:`release` or the end of the test."""
        sock = closed_port()
        port = int(sock.getsockname()[1])
        self._closed[port] = sock
        return port

    def release(self, port: int) -> None:
        """Free a :meth:`closed` port, e.g. to start a real server on it."""
        self._closed.pop(port).close()

    async def _raw(self, server: _RawServer) -> None:
        await server.start()
        self._started.append(server)

    async def stop(self) -> None:
        for server in reversed(self._started):
            await server.stop()
        for sock in self._closed.values():
            sock.close()
