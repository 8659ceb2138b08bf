"""Failure classification, table-driven.

The gRPC rows are the real status codes and details strings grpcio 1.85 produced
against real servers (see test_otlp_probes.py for the live versions).
"""

from __future__ import annotations

import errno

import aiohttp
import grpc
import pytest

from exporter.model import Reason
from exporter.probes.otlp_grpc import classify_rpc_error
from exporter.probes.otlp_http import classify_exception

C = grpc.StatusCode
CONNECT = "failed to connect to all addresses; last error: "


@pytest.mark.parametrize(
    ("code", "details", "reason"),
    [
        # nothing listening
        (C.UNAVAILABLE, CONNECT + "UNKNOWN: ipv4:127.0.0.1:45967: Failed to connect to remote "
         "host: Connection refused", "connection_refused"),
        # reset on accept, with and without TLS
        (C.UNAVAILABLE, CONNECT + "UNAVAILABLE: ipv4:127.0.0.1:34229: recvmsg:Connection reset "
         "by peer (104)", "connection_reset"),
        (C.UNAVAILABLE, CONNECT + "UNAVAILABLE: ipv4:127.0.0.1:34229: Handshake read failed "
         "(recvmsg:Connection reset by peer (104))", "connection_reset"),
        # a TLS server hanging up on a plaintext client
        (C.UNAVAILABLE, CONNECT + "UNAVAILABLE: ipv4:127.0.0.1:37133: Socket closed",
         "connection_reset"),
        # the connection broke after it was established
        (C.UNAVAILABLE, "Stream removed (recvmsg:Connection reset by peer (104))",
         "connection_reset"),
        (C.UNAVAILABLE, "Stream removed (Socket closed)", "connection_reset"),
        (C.UNAVAILABLE, "Stream removed (GOAWAY received; Error code: 0; Debug Text: )",
         "connection_reset"),
        # an HTTP/1.1 server (aiohttp) on the gRPC port
        (C.UNAVAILABLE, CONNECT + "INTERNAL: ipv4:127.0.0.1:39287: Failed parsing HTTP/2 "
         "(Expected SETTINGS frame as the first frame, got frame type 80) (Trying to connect an "
         "http1.x server (HTTP status 400))", "protocol"),
        # an HTTP/2 server that is not gRPC
        (C.UNIMPLEMENTED, "Received http2 header with status: 404", "protocol"),
        (C.INTERNAL, "Received http2 header with status: 400", "protocol"),
        (C.UNAVAILABLE, "Received http2 header with status: 503", "protocol"),
        (C.UNKNOWN, "No status received", "protocol"),
        # TLS
        (C.UNAVAILABLE, CONNECT + "UNKNOWN: ipv4:127.0.0.1:37133: Tls handshake failed "
         "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
         "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK", "tls"),
        (C.UNAVAILABLE, CONNECT + "UNKNOWN: ipv4:127.0.0.1:37133: Custom verification check "
         "failed with error: UNAUTHENTICATED: Hostname Verification Check failed.", "tls"),
        (C.UNAVAILABLE, CONNECT + "UNKNOWN: ipv4:127.0.0.1:32825: Tls handshake failed "
         "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:"
         "WRONG_VERSION_NUMBER: Invalid certificate verification context: OK", "tls"),
        (C.UNAVAILABLE, CONNECT + "UNKNOWN: ipv4:127.0.0.1:46383: Failed to create security "
         "handshaker.", "tls"),
        # name resolution (only when dialling a name; depwatch dials addresses)
        (C.UNAVAILABLE, "errors resolving nonexistent.invalid:4317: [field:hostname lookup "
         "error:address lookup failed for nonexistent.invalid:4317: Domain name not found]",
         "dns"),
        # deadline
        (C.DEADLINE_EXCEEDED, "Deadline Exceeded", "timeout"),
        # a connect failure of another kind
        (C.UNAVAILABLE, CONNECT + "UNKNOWN: ipv4:10.0.0.1:4317: No route to host", "other"),
        # statuses a server sent: their details are never parsed
        (C.UNAVAILABLE, "receiver configured to fail", "grpc_unavailable"),
        (C.UNAVAILABLE, "exporter failed: dial tcp 10.0.0.9:9090: connect: connection refused",
         "grpc_unavailable"),
        (C.UNIMPLEMENTED, "Method not found!", "grpc_unimplemented"),
        (C.UNAUTHENTICATED, "missing api key", "grpc_unauthenticated"),
        (C.RESOURCE_EXHAUSTED, "memory limiter", "grpc_resource_exhausted"),
        (C.INVALID_ARGUMENT, "", "grpc_invalid_argument"),
    ],
)  # fmt: skip
def test_grpc_classification(code: grpc.StatusCode, details: str, reason: str) -> None:
    assert classify_rpc_error(code, details) == reason


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), Reason.TIMEOUT),
        (aiohttp.ServerDisconnectedError(), Reason.CONNECTION_RESET),
        (aiohttp.ClientOSError(errno.ECONNRESET, "reset by peer"), Reason.CONNECTION_RESET),
        (aiohttp.ClientOSError(errno.EPIPE, "Broken pipe"), Reason.CONNECTION_RESET),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), Reason.CONNECTION_REFUSED),
        (aiohttp.ClientOSError(errno.ETIMEDOUT, "Connection timed out"), Reason.TIMEOUT),
        (aiohttp.ClientOSError(errno.EHOSTUNREACH, "No route to host"), Reason.OTHER),
        (aiohttp.ClientPayloadError("Response payload is not completed"), Reason.PROTOCOL),
        (ValueError("unexpected"), Reason.OTHER),
    ],
)  # fmt: skip
def test_http_classification(exc: BaseException, reason: Reason) -> None:
    assert classify_exception(exc) == reason


def test_http_classification_follows_the_cause() -> None:
    outer = aiohttp.ClientPayloadError("Response payload is not completed")
    outer.__cause__ = ConnectionResetError(errno.ECONNRESET, "reset")
    assert classify_exception(outer) == Reason.CONNECTION_RESET
