"""Fixtures for the socket-table tests: /proc trees written under tmp_path, a private
redis-server per test, and child processes that hold connections.

Self-contained on purpose (tests/conftest.py is shared and evolving). Every process
started here is stopped at teardown; every wait is bounded.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from socket_fixtures import SNMP, Holder, RedisProc, free_port, stop, wait_until


@pytest.fixture
def proc_tree(tmp_path: Path) -> Callable[..., Path]:
    """Write ``<root>/net/{tcp,tcp6,snmp}``; a None value leaves the file out."""

    def make(tcp: str | None = "", tcp6: str | None = "", snmp: str | None = SNMP) -> Path:
        root = tmp_path / "proc"
        (root / "net").mkdir(parents=True, exist_ok=True)
        for name, text in (("tcp", tcp), ("tcp6", tcp6), ("snmp", snmp)):
            path = root / "net" / name
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(text)
        return root

    return make


@pytest.fixture
def sockets_redis(tmp_path: Path) -> Iterator[RedisProc]:
    """A private redis-server on a free 127.0.0.1 port (fresh per test, so earlier
    tests' TIME_WAIT entries never land on it)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--protected-mode", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        if not wait_until(ready, timeout=10):
            pytest.fail(f"redis-server did not answer on 127.0.0.1:{port}")
        yield RedisProc("127.0.0.1", port, proc)
    finally:
        stop(proc)


@pytest.fixture
def holder() -> Iterator[Callable[[list[tuple[int, str, int]]], Holder]]:
    started: list[Holder] = []

    def start(targets: list[tuple[int, str, int]]) -> Holder:
        h = Holder(targets)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()
