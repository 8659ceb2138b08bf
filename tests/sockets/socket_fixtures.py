"""Helpers for the socket-table tests: kernel-format table lines, process control.

Imported as ``socket_fixtures`` (pytest puts this directory on sys.path; the name is
unique across tests/).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.sockets.addresses import address_hex

V4_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
    "   uid  timeout inode"
)
V6_HEADER = (
    "  sl  local_address                         remote_address                        st"
    " tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
)
SNMP = (
    "Ip: Forwarding DefaultTTL InReceives\n"
    "Ip: 1 64 100\n"
    "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails"
    " EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n"
    "Tcp: 1 200 120000 -1 33 17 4 6 2 3783 2307 9 0 17 0\n"
    "Udp: InDatagrams NoPorts\n"
    "Udp: 5 0\n"
)


def tcp_line(
    sl: int,
    local: tuple[str, int],
    remote: tuple[str, int],
    state: str,
    inode: int,
    *,
    family: int = 4,
    uid: int = 1000,
) -> str:
    """One line as the kernel prints it (tcp4_seq_show / tcp6_seq_show)."""
    lhex = address_hex(local[0], family=family)  # type: ignore[arg-type]
    rhex = address_hex(remote[0], family=family)  # type: ignore[arg-type]
    assert lhex is not None
    assert rhex is not None
    line = (
        f"{sl:4d}: {lhex}:{local[1]:04X} {rhex}:{remote[1]:04X} {state} "
        f"00000000:00000000 00:00000000 00000000 {uid:5d}        0 {inode} "
    )
    if inode:
        return line + "1 0000000000000000 20 4 30 10 -1"
    return line + "3 0000000000000000"  # TIME_WAIT / SYN_RECV shape


def table(lines: list[str], *, family: int = 4) -> str:
    header = V4_HEADER if family == 4 else V6_HEADER
    return "\n".join([header, *lines]) + "\n"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass(frozen=True)
class RedisProc:
    host: str
    port: int
    proc: subprocess.Popen[str]


_HOLDER = textwrap.dedent(
    """
    import socket, sys
    targets = [(f, h, int(p)) for f, h, p in (a.split(",") for a in sys.argv[1:])]
    held = []
    for family, host, port in targets:
        fam = socket.AF_INET6 if family == "6" else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(5)
        if fam == socket.AF_INET:
            s.bind(("127.0.0.1", 0))
        s.connect((host, port))
        held.append(s)
    print("held", len(held), flush=True)
    sys.stdin.readline()              # wait for "close"
    for s in held:
        s.close()                     # the client closes first -> TIME_WAIT here
    print("closed", flush=True)
    sys.stdin.readline()              # stay alive until told to exit
    """
)


class Holder:
    """A child process holding TCP connections until told to close them."""

    def __init__(self, targets: list[tuple[int, str, int]]) -> None:
        args = [f"{fam},{host},{port}" for fam, host, port in targets]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._expect("held")

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the child's connects have 5 s timeouts
        if not line.startswith(word):
            stop(self.proc)
            raise AssertionError(f"connection holder said {line!r}, expected {word!r}")

    def close_connections(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()
        self._expect("closed")

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
