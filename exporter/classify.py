"""Map an exception from a Redis attempt to a :class:`Reason` (pure).

redis-py wraps socket errors (``ConnectionError(...) from OSError``), so the whole
cause chain is inspected; the most specific cause wins.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from redis import exceptions as rx

from exporter.model import Reason

__all__ = ["classify_redis_error", "describe_error"]

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_REFUSED_ERRNOS = frozenset({errno.ECONNREFUSED})
_TIMEOUT_ERRNOS = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH})
_AUTH_PREFIXES = ("NOAUTH", "WRONGPASS", "NOPERM", "INVALIDPASSWORD")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 16:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _classify_one(exc: BaseException) -> Reason | None:
    # order matters: subclasses before their bases
    if isinstance(exc, rx.AuthenticationError | rx.AuthenticationWrongNumberOfArgsError):
        return Reason.AUTH
    if type(exc).__name__ == "CredentialsError":
        return Reason.AUTH
    if isinstance(exc, rx.BusyLoadingError):
        return Reason.LOADING
    if isinstance(exc, rx.ResponseError):
        text = str(exc).upper()
        if text.startswith(_AUTH_PREFIXES):
            return Reason.AUTH
        if text.startswith("LOADING"):
            return Reason.LOADING
        if text.startswith(("CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN")):
            return Reason.CLUSTER_DOWN
        return Reason.OTHER
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS
    if isinstance(exc, socket.gaierror):
        return Reason.DNS
    if isinstance(exc, ConnectionRefusedError):
        return Reason.CONNECTION_REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return Reason.CONNECTION_RESET
    if isinstance(exc, asyncio.IncompleteReadError):
        return Reason.CONNECTION_RESET
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | rx.TimeoutError | socket.timeout):
        return Reason.TIMEOUT
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _REFUSED_ERRNOS:
            return Reason.CONNECTION_REFUSED
        if exc.errno in _RESET_ERRNOS:
            return Reason.CONNECTION_RESET
        if exc.errno in _TIMEOUT_ERRNOS:
            return Reason.TIMEOUT
    if isinstance(exc, rx.InvalidResponse | UnicodeDecodeError):
        return Reason.PROTOCOL
    return None


def _classify_message(exc: BaseException) -> Reason | None:
    """Last resort for errors redis-py raises without a cause."""
    text = str(exc).lower()
    if "connection closed by server" in text or "connection reset" in text:
        return Reason.CONNECTION_RESET
    if "errno 111" in text or "connection refused" in text:
        return Reason.CONNECTION_REFUSED
    if "protocol error" in text:
        return Reason.PROTOCOL
    return None


def classify_redis_error(exc: BaseException) -> Reason:
    chain = _chain(exc)
    # the innermost specific cause is the most precise (e.g. SSLError under ConnectionError)
    for item in reversed(chain):
        reason = _classify_one(item)
        if reason is not None:
            return reason
    for item in chain:
        reason = _classify_message(item)
        if reason is not None:
            return reason
    return Reason.OTHER


def describe_error(exc: BaseException, *, secrets: tuple[str, ...] = ()) -> str:
    """A short, secret-free description for logs and /status (never for labels)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:200]
