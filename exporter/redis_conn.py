"""Single redis-py connections, configured so that only allowed commands are sent.

depwatch uses :class:`redis.asyncio.Connection` directly rather than a client with a
pool: one long-lived connection per node, no hidden retries (``Retry(NoBackoff(), 0)``),
RESP2 (no HELLO), no ``CLIENT SETINFO`` (``driver_info=None``). On connect redis-py
sends only AUTH (when a password is set) and ``CLIENT SETNAME depwatch``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider

from exporter.config import Settings

__all__ = ["CLIENT_NAME", "ServerNameSSLConnection", "open_connection_for", "split_address"]

CLIENT_NAME = "depwatch"


class ServerNameSSLConnection(SSLConnection):
    """SSLConnection that verifies REDIS_TLS_SERVER_NAME instead of the dialled host."""

    def __init__(self, *, server_name: str | None = None, **kwargs: Any) -> None:
        self._server_name = server_name
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        kwargs = dict(super()._connection_arguments())
        if self._server_name:
            kwargs["server_hostname"] = self._server_name
        return kwargs


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def open_connection_for(
    address: str,
    settings: Settings,
    *,
    credentials: CredentialProvider | None,
    timeout: float,
) -> Connection:
    """A not-yet-connected connection to ``address`` (``host:port``).

    ``timeout`` bounds connect and socket reads; the caller also wraps each attempt
    in ``asyncio.timeout`` so a TLS handshake or AUTH cannot outlive the attempt.
    """
    host, port = split_address(address)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "socket_connect_timeout": min(settings.redis_dial_timeout, timeout),
        "socket_timeout": min(max(settings.redis_read_timeout, settings.redis_write_timeout),
                              timeout),
        "retry": Retry(NoBackoff(), 0),
        "protocol": 2,
        "driver_info": None,
        "client_name": CLIENT_NAME,
        "decode_responses": True,
        "credential_provider": credentials,
        "health_check_interval": 0,
    }  # fmt: skip
    if not settings.redis_tls_enabled:
        return Connection(**common)
    skip = settings.redis_tls_insecure_skip_verify
    return ServerNameSSLConnection(
        server_name=settings.redis_tls_server_name,
        ssl_cert_reqs=ssl.CERT_NONE if skip else ssl.CERT_REQUIRED,
        ssl_ca_certs=settings.redis_tls_ca_file,
        ssl_check_hostname=not skip,
        **common,
    )
