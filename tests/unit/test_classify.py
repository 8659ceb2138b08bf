"""Reason classification over redis-py's wrapped exceptions."""

import asyncio
import errno
import socket
import ssl

import pytest
from redis import exceptions as rx

from exporter.classify import classify_redis_error, describe_error
from exporter.credentials import CredentialsError
from exporter.model import Reason


def wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise rx.ConnectionError("Error connecting") from exc
    except rx.ConnectionError as outer:
        return outer


@pytest.mark.parametrize(("exc", "reason"), [
    (wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), Reason.CONNECTION_REFUSED),
    (wrapped(ConnectionResetError(errno.ECONNRESET, "reset")), Reason.CONNECTION_RESET),
    (wrapped(BrokenPipeError(errno.EPIPE, "pipe")), Reason.CONNECTION_RESET),
    (wrapped(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), Reason.DNS),
    (wrapped(ssl.SSLCertVerificationError("hostname mismatch")), Reason.TLS),
    (wrapped(ssl.SSLError("wrong version")), Reason.TLS),
    (TimeoutError(), Reason.TIMEOUT),
    (rx.TimeoutError("Timeout reading from socket"), Reason.TIMEOUT),
    (rx.AuthenticationError("invalid password"), Reason.AUTH),
    (rx.ResponseError("WRONGPASS invalid username-password pair"), Reason.AUTH),
    (rx.ResponseError("NOAUTH Authentication required."), Reason.AUTH),
    (CredentialsError("no password"), Reason.AUTH),
    (rx.BusyLoadingError("Redis is loading the dataset in memory"), Reason.LOADING),
    (rx.ResponseError("CLUSTERDOWN The cluster is down"), Reason.CLUSTER_DOWN),
    (rx.InvalidResponse("Protocol Error: b'H'"), Reason.PROTOCOL),
    (rx.ConnectionError("Connection closed by server."), Reason.CONNECTION_RESET),
    (wrapped(OSError(errno.EHOSTUNREACH, "No route to host")), Reason.TIMEOUT),
    (OSError("Multiple exceptions: [Errno 111] Connect call failed"), Reason.CONNECTION_REFUSED),
    (asyncio.IncompleteReadError(b"", 10), Reason.CONNECTION_RESET),
    (ValueError("odd"), Reason.OTHER),
])  # fmt: skip
def test_classification(exc: BaseException, reason: Reason) -> None:
    assert classify_redis_error(exc) is reason


def test_auth_error_is_connection_error_subclass_but_classified_auth() -> None:
    exc = rx.AuthenticationError("invalid username-password pair")
    assert isinstance(exc, rx.ConnectionError)
    assert classify_redis_error(exc) is Reason.AUTH


def test_describe_error_redacts_secrets_and_truncates() -> None:
    text = describe_error(ValueError("bad token hunter2 " + "x" * 500), secrets=("hunter2",))
    assert "hunter2" not in text and "***" in text and len(text) <= 200
