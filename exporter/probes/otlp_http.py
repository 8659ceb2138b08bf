"""OTLP/HTTP probe: one POST of an empty ExportMetricsServiceRequest.

Unlike the SDK exporters (which retry for up to 10 s and return only
success/failure), this sends exactly one request and says *why* it failed.

Connections: the shared session (:func:`new_session`) uses ``force_close=True``,
so every probe dials a fresh TCP (and TLS) connection, as an application's
exporter does after its connection broke. A pooled keep-alive connection would
keep "working" for a while after the collector went away, and would never see a
reset at connect time. Redirects are not followed (a redirect is reported as
``http_3xx``: following it would be a second request), proxies from the
environment are not used (the probe dials the resolved address itself).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import structlog
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb
from yarl import URL

from exporter import __version__
from exporter.model import OtlpProbeResult, Reason
from exporter.otlp_config import OtlpSettings, format_hostport

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from exporter.otlp_targets import OtlpTarget

__all__ = [
    "MAX_RESPONSE_BYTES",
    "USER_AGENT",
    "classify_exception",
    "describe_partial_success",
    "new_session",
    "probe",
    "ssl_context",
    "target_result",
]

#: larger answers to an empty export are not OTLP; reading stops there
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = f"depwatch/{__version__}"
_MEDIA_TYPES = {
    "http/protobuf": ("application/x-protobuf", ("application/x-protobuf", "application/protobuf")),
    "http/json": ("application/json", ("application/json",)),
}
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}
_MAX_MESSAGE = 200


def new_session() -> aiohttp.ClientSession:
    """The session to share across HTTP probes (call inside the running loop; close it
    on shutdown). Fresh connection per request, no cookies, no environment proxies."""
    connector = aiohttp.TCPConnector(force_close=True, limit=0, use_dns_cache=False)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )


@functools.lru_cache(maxsize=8)
def _cached_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None, _stamp: tuple[int, ...]
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def _stamp(*paths: str | None) -> tuple[int, ...]:
    """Modification stamps, so a rotated CA or client certificate is picked up."""
    stamps: list[int] = []
    for path in paths:
        if path:
            st = os.stat(path)
            stamps += [st.st_mtime_ns, st.st_size]
    return tuple(stamps)


def ssl_context(settings: OtlpSettings) -> ssl.SSLContext:
    """TLS context per the certificate settings (system CAs without a CA file).

    Raises OSError / ssl.SSLError when a file cannot be read or parsed.
    """
    files = (settings.ca_file, settings.client_cert_file, settings.client_key_file)
    return _cached_context(*files, _stamp(*files))


def describe_partial_success(response: pb.ExportMetricsServiceResponse) -> str | None:
    """A short text for a partial success, None when the response has none."""
    partial = response.partial_success
    if not partial.rejected_data_points and not partial.error_message:
        return None
    text = f"rejected_data_points={partial.rejected_data_points}"
    if partial.error_message:
        text += ": " + partial.error_message[:_MAX_MESSAGE]
    return text


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [getattr(current, "os_error", None), current.__cause__, current.__context__]
    return seen


def classify_exception(exc: BaseException) -> Reason:
    """The reason for an exception raised by an aiohttp request."""
    chain = _chain(exc)
    if any(isinstance(e, TimeoutError) for e in chain):
        return Reason.TIMEOUT
    if any(isinstance(e, aiohttp.ClientConnectorDNSError) for e in chain):
        return Reason.DNS
    for e in chain:
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return Reason.CONNECTION_REFUSED
        if isinstance(e, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return Reason.CONNECTION_RESET
        if isinstance(e, OSError) and e.errno in _RESET_ERRNOS and not isinstance(e, ssl.SSLError):
            return Reason.CONNECTION_RESET
        if isinstance(e, OSError) and e.errno == errno.ETIMEDOUT:
            return Reason.TIMEOUT
    if any(isinstance(e, aiohttp.ClientSSLError | ssl.SSLError) for e in chain):
        return Reason.TLS
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # the peer closed the connection without answering
        return Reason.CONNECTION_RESET
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        # not HTTP/1.x (e.g. an HTTP/2 preface from a gRPC server), or a broken body
        return Reason.PROTOCOL
    return Reason.OTHER


def _short(exc: BaseException) -> str:
    """A one-line, bounded description (aiohttp messages can quote raw response bytes)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:_MAX_MESSAGE]


def _host_header(host: str, port: int, *, tls: bool) -> str:
    """The Host header the application would send (the name, not the dialled address)."""
    hostport = format_hostport(host, port)
    return hostport.rpartition(":")[0] if port == (443 if tls else 80) else hostport


def _media_type(value: str | None) -> str:
    return (value or "").partition(";")[0].strip().lower()


def _parse_ok(
    protocol: str, content_type: str | None, body: bytes
) -> pb.ExportMetricsServiceResponse:
    """Parse a 2xx answer; ValueError when it is not an OTLP export response."""
    media = _media_type(content_type)
    if media not in _MEDIA_TYPES[protocol][1]:
        raise ValueError(f"response content type {media or 'missing'!r} is not OTLP")
    response = pb.ExportMetricsServiceResponse()
    try:
        if protocol == "http/json":
            json_format.Parse(body.decode("utf-8"), response, ignore_unknown_fields=True)
        else:
            response.ParseFromString(body)
    except (DecodeError, json_format.ParseError, ValueError, RecursionError) as exc:
        raise ValueError(
            f"response body is not an ExportMetricsServiceResponse ({type(exc).__name__})"
        ) from None
    return response


def _request_body(protocol: str) -> bytes:
    if protocol == "http/json":
        return json_format.MessageToJson(pb.ExportMetricsServiceRequest()).encode()
    return pb.ExportMetricsServiceRequest().SerializeToString()


async def _read_limited(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it exceeds MAX_RESPONSE_BYTES."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def target_result(
    target: OtlpTarget,
    reason: str | None,
    error: str | None = None,
    *,
    duration: float | None = None,
    partial: str | None = None,
    log: FilteringBoundLogger,
) -> OtlpProbeResult:
    """One probe's result for ``target``: ok when ``reason`` is None, else a failure
    (logged at debug, its error text capped). Shared by the HTTP and gRPC probes."""
    if reason is not None:
        log.debug(
            "otlp probe failed", endpoint=target.endpoint, protocol=target.protocol,
            reason=reason, error=error,
        )  # fmt: skip
    return OtlpProbeResult(
        endpoint=target.endpoint, protocol=target.protocol, ok=reason is None,
        reason=reason, duration_seconds=duration,
        error=None if error is None else error[:_MAX_MESSAGE], partial_success=partial,
        port=target.port,
    )  # fmt: skip


async def probe(
    target: OtlpTarget,
    settings: OtlpSettings,
    *,
    session: aiohttp.ClientSession,
    time_limit: float | None = None,
    log: FilteringBoundLogger | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> OtlpProbeResult:
    """Send one empty export to ``target``; never raises for a target failure."""
    log = log or structlog.get_logger(__name__)
    budget = settings.timeout_seconds if time_limit is None else time_limit

    def result(
        reason: str | None,
        error: str | None = None,
        *,
        duration: float | None = None,
        partial: str | None = None,
    ) -> OtlpProbeResult:
        return target_result(target, reason, error, duration=duration, partial=partial,
                             log=log)  # fmt: skip

    context: ssl.SSLContext | bool = False
    if target.tls:
        try:
            context = ssl_context(settings)
        except (OSError, ssl.SSLError, ValueError) as exc:
            return result(Reason.TLS, f"cannot load the TLS files: {_short(exc)}")

    scheme = "https" if target.tls else "http"
    url = URL(
        f"{scheme}://{format_hostport(target.address, target.port)}{target.path}", encoded=True
    )
    headers = {k: v for k, v in settings.headers if k not in ("host", "content-type")}
    headers["Host"] = _host_header(settings.host, target.port, tls=target.tls)
    headers["Content-Type"] = _MEDIA_TYPES[target.protocol][0]
    server_hostname = settings.host if target.tls and settings.host != target.address else None

    start = clock()
    try:
        # asyncio.timeout is the hard deadline: aiohttp rounds timeouts >= 5 s up.
        async with (
            asyncio.timeout(budget),
            session.post(
                url,
                data=_request_body(target.protocol),
                headers=headers,
                ssl=context,
                server_hostname=server_hostname,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None),
            ) as response,
        ):
            body = await _read_limited(response)
            elapsed = clock() - start
            status = response.status
            response_type = response.headers.get("Content-Type")
    except Exception as exc:  # noqa: BLE001 - a probe reports every failure, it never raises
        return result(classify_exception(exc), _short(exc))

    if not 100 <= status <= 599:
        return result(Reason.PROTOCOL, f"invalid HTTP status {status}")
    if not 200 <= status <= 299:
        return result(f"http_{status}", f"HTTP {status}")
    if body is None:
        return result(Reason.PROTOCOL, f"response body over {MAX_RESPONSE_BYTES} bytes")
    try:
        parsed = _parse_ok(target.protocol, response_type, body)
    except ValueError as exc:
        return result(Reason.PROTOCOL, str(exc))
    return result(None, duration=elapsed, partial=describe_partial_success(parsed))
