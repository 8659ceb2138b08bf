"""Redis node probe: one long-lived connection per node; PING and INFO.

A probe attempt raises on failure; :func:`exporter.checks.run_check` owns attempts,
backoff, deadlines and classification. After any error (a timeout included) the
connection is discarded, so a late reply can never be read as the next command's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from redis.asyncio.connection import Connection
from redis.credentials import CredentialProvider
from redis.exceptions import InvalidResponse, ResponseError

from exporter.config import Settings
from exporter.model import NodeInfo
from exporter.redis_conn import open_connection_for
from exporter.redis_parse import parse_node_info

__all__ = ["RedisNodeProbe"]

#: the INFO sections parse_node_info reads (several sections need Redis >= 7.0)
_INFO_SECTIONS = ("INFO", "clients", "stats", "replication")


class RedisNodeProbe:
    """The probe of one node, holding its connection between cycles."""

    def __init__(
        self,
        address: str,
        settings: Settings,
        *,
        credentials: CredentialProvider | None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.address = address
        self._settings = settings
        self._credentials = credentials
        self._clock = clock
        self._conn: Connection | None = None
        self._info_command: tuple[str, ...] = _INFO_SECTIONS

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = open_connection_for(
                self.address, self._settings, credentials=self._credentials,
                timeout=self._settings.health_check_timeout,
            )  # fmt: skip
        return self._conn

    async def ping(self) -> float:
        """(Connect if needed, then) PING; returns the PING's round trip in seconds.

        The round trip excludes connecting and AUTH, and a check sends it right after
        INFO (see :mod:`exporter.checks`): it is what an application with a warm pool
        sees.
        """
        conn = self._connection()
        try:
            if not conn.is_connected:
                await conn.connect()
            started = self._clock()
            await conn.send_command("PING", check_health=False)
            reply = await conn.read_response()
            rtt = self._clock() - started
        except BaseException:
            await self.discard()
            raise
        if reply not in ("PONG", b"PONG"):
            await self.discard()
            raise InvalidResponse("unexpected reply to PING")
        return rtt

    async def info(self) -> NodeInfo:
        """INFO with only the sections read (half the bytes of the default set); servers
        before 7.0 take a single section, so those get plain INFO from then on."""
        conn = self._connection()
        try:
            await conn.send_command(*self._info_command, check_health=False)
            reply = await conn.read_response()
        except ResponseError:
            if self._info_command == _INFO_SECTIONS:  # an older server: one retry, plain
                self._info_command = ("INFO",)
                return await self.info()
            raise
        except BaseException:
            await self.discard()
            raise
        if not isinstance(reply, str):
            await self.discard()
            raise InvalidResponse("unexpected reply to INFO")
        return parse_node_info(reply)

    async def discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # closing a broken socket may fail; there is nothing left to do about it
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def close(self) -> None:
        await self.discard()
