"""Misbehaving Redis peers on 127.0.0.1:0 for the hardening tests.

:class:`RespServer` speaks just enough RESP to read a client's commands and answers
each through a ``behaviour`` (command -> bytes to send, and whether to close after):
well-formed replies, garbage, a reply cut in the middle, a reply of the wrong type.
It counts connections accepted and currently open, so a test can tell that the client
discarded its connection after a failure. It can serve TLS with any certificate
(an expired one, one for another name).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = [
    "CLOSE",
    "Reply",
    "RespServer",
    "TlsPeer",
    "cut_mid_reply",
    "garbage_always",
    "garbage_info",
    "healthy",
    "make_tls_peer",
    "wrong_type_to_ping",
]

HOST = "127.0.0.1"
#: send this, then close the connection
CLOSE = object()
Reply = tuple[bytes, object | None]
Behaviour = Callable[[list[bytes]], Reply]

_INFO = (
    "# Server\r\nredis_version:7.0.0\r\n# Clients\r\nconnected_clients:{clients}\r\n"
    "maxclients:100\r\n# Stats\r\nrejected_connections:0\r\n# Replication\r\nrole:master\r\n"
)


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def healthy(cmd: list[bytes]) -> Reply:
    """A well-behaved node (CLIENT SETNAME, PING, INFO)."""
    name = cmd[0].upper() if cmd else b""
    if name == b"PING":
        return b"+PONG\r\n", None
    if name == b"INFO":
        return _bulk(_INFO.format(clients=1)), None
    return b"+OK\r\n", None


def garbage_always(_cmd: list[bytes]) -> Reply:
    """Not RESP at all, from the first reply (CLIENT SETNAME on connect)."""
    return b"?\x00\xffnot resp at all\r\n", None


def cut_mid_reply(cmd: list[bytes]) -> Reply:
    """Connects fine, then sends ``+PO`` for PING and closes."""
    if cmd and cmd[0].upper() == b"PING":
        return b"+PO", CLOSE
    return healthy(cmd)


def wrong_type_to_ping(cmd: list[bytes]) -> Reply:
    """Answers PING with an integer: well-formed RESP, wrong reply."""
    if cmd and cmd[0].upper() == b"PING":
        return b":1\r\n", None
    return healthy(cmd)


def garbage_info(cmd: list[bytes]) -> Reply:
    """PING is fine; INFO answers with a bulk string header and then garbage."""
    if cmd and cmd[0].upper() == b"INFO":
        return b"$5\r\nab", CLOSE
    return healthy(cmd)


async def _read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return [line.strip()]  # inline command (or not RESP): answer it anyway
    parts: list[bytes] = []
    for _ in range(int(line[1:].strip() or 0)):
        header = await reader.readline()
        size = int(header[1:].strip())
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts


class RespServer:
    """A RESP server whose answers come from ``behaviour``; optionally TLS."""

    def __init__(self, behaviour: Behaviour, *, ssl_context: ssl.SSLContext | None = None):
        self.behaviour = behaviour
        self.ssl_context = ssl_context
        self.accepted = 0
        self.open = 0
        self.commands: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self) -> RespServer:
        self._server = await asyncio.start_server(self._handle, HOST, 0, ssl=self.ssl_context)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while (cmd := await _read_command(reader)) is not None:
                self.commands.append(cmd[0].upper() if cmd else b"")
                data, after = self.behaviour(cmd)
                writer.write(data)
                await writer.drain()
                if after is CLOSE:
                    break
        except (OSError, ValueError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self.open -= 1
            self._tasks.discard(task)
            writer.transport.abort()


@dataclass(frozen=True)
class TlsPeer:
    """A CA file the client trusts and server contexts with bad certificates from it."""

    ca_file: Path
    expired: ssl.SSLContext
    wrong_name: ssl.SSLContext


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def make_tls_peer(directory: Path) -> TlsPeer:
    ca = trustme.CA(organization_name="depwatch hostile-peer CA")
    ca_file = directory / "hostile-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = dt.datetime.now(dt.UTC)
    expired = ca.issue_cert("127.0.0.1", "localhost", not_before=now - dt.timedelta(days=30),
                            not_after=now - dt.timedelta(days=1))  # fmt: skip
    wrong_name = ca.issue_cert("other.test")
    return TlsPeer(ca_file, _server_context(expired), _server_context(wrong_name))
