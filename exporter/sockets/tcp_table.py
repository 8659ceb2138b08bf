"""Fast aggregation over the kernel's ``/proc/net/tcp`` and ``/proc/net/tcp6`` tables.

A pod holding a pool of 1000 connections to each of 40 Redis nodes has a 40k-line
table, read every probe interval, so the hot path never builds an object per line:

* one compiled regular expression pulls the ``remote:port state`` column pair out of
  every well-formed line (a string per line, no tuples) and ``collections.Counter``
  tallies them in C;
* the wanted remote endpoints are encoded once into the kernel's notation, so
  counting is a dict lookup per (endpoint, state) on the raw column text;
* depwatch's own sockets are located by inode (:mod:`exporter.sockets.own_lines`)
  and subtracted.

Addresses are matched in the kernel's spelling (:mod:`exporter.sockets.addresses`);
IPv4-mapped IPv6 sockets in ``tcp6`` count for the IPv4 address. A line is
well-formed when its remote address, port and state columns have the kernel's
layout (upper-case hex, as ``%08X``/``%04X``/``%02X`` print); other lines are
skipped and counted as malformed. Nothing here raises on input.

TIME_WAIT and SYN_RECV entries carry inode 0, so they can never be attributed to a
process: a connection that depwatch itself closed first is counted in TIME_WAIT.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Generic, TypeVar

from exporter.sockets.addresses import HEX_LEN, Family, address_hex, decode_address
from exporter.sockets.own_lines import KEY_PATTERNS, own_keys

__all__ = [
    "KERNEL_STATES",
    "LIVE_KERNEL_STATES",
    "STATES",
    "Family",
    "RemoteMatcher",
    "TableCounts",
    "TcpSocket",
    "address_hex",
    "count_by_remote",
    "decode_address",
    "iter_sockets",
]

K = TypeVar("K", bound=Hashable)

#: SPEC §4 state label values, in display order.
STATES: tuple[str, ...] = (
    "established",
    "time_wait",
    "close_wait",
    "syn_sent",
    "fin_wait",
    "other",
)

#: The kernel's ``st`` column (include/net/tcp_states.h) -> SPEC state label.
KERNEL_STATES: Mapping[str, str] = {
    "01": "established",
    "02": "syn_sent",
    "03": "other",  # SYN_RECV
    "04": "fin_wait",  # FIN_WAIT1
    "05": "fin_wait",  # FIN_WAIT2
    "06": "time_wait",
    "07": "other",  # CLOSE
    "08": "close_wait",
    "09": "other",  # LAST_ACK
    "0A": "other",  # LISTEN
    "0B": "other",  # CLOSING
    "0C": "other",  # NEW_SYN_RECV
    "0D": "other",  # BOUND_INACTIVE (Linux 6.8+)
}

#: ESTABLISHED and SYN_SENT: a connection the application is using or opening.
LIVE_KERNEL_STATES: frozenset[str] = frozenset({"01", "02"})

#: every state a well-formed line may carry (00-0F); a future kernel's new one is "other"
_ALL_STATES: Mapping[str, str] = {
    f"{i:02X}": KERNEL_STATES.get(f"{i:02X}", "other") for i in range(16)
}


@dataclass(frozen=True, slots=True)
class TcpSocket:
    """One decoded line; only :func:`iter_sockets` builds these (tests, debugging)."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    kernel_state: str  # "01".."0D"
    state: str  # SPEC label
    inode: int


@dataclass(frozen=True, slots=True)
class RemoteMatcher(Generic[K]):
    """Wanted remote endpoints, pre-encoded per table family. Build once per cycle.

    Every (endpoint, kernel state) pair is spelled out as the table's own
    "IPHEX:PORT ST" text, so counting is one dict lookup per pair, whatever the
    number of distinct remotes in the table (a server pod has one per client).
    """

    #: family -> "IPHEX:PORT ST" -> (key, SPEC state)
    wanted: Mapping[int, Mapping[str, tuple[K, str]]]
    #: family -> ("IPHEX:", ...) of the addresses whose live sockets' ports are reported
    live_prefixes: Mapping[int, tuple[str, ...]]

    @classmethod
    def build(
        cls, endpoints: Mapping[tuple[str, int], K], live_ips: Iterable[str] = ()
    ) -> RemoteMatcher[K]:
        """``endpoints``: (ip, port) -> key; unparseable IPs are ignored.

        When two endpoints spell the same address (``::ffff:10.0.0.1`` and
        ``10.0.0.1``), the first one's key wins.
        """
        wanted: dict[int, dict[str, tuple[K, str]]] = {4: {}, 6: {}}
        lives: dict[int, set[str]] = {4: set(), 6: set()}
        for (ip, port), key in endpoints.items():
            for fam in (4, 6):
                hexip = address_hex(ip, family=fam)
                if hexip is None or not 0 <= port <= 0xFFFF:
                    continue
                for st, state in _ALL_STATES.items():
                    wanted[fam].setdefault(f"{hexip}:{port:04X} {st}", (key, state))
        for ip in live_ips:
            for fam in (4, 6):
                hexip = address_hex(ip, family=fam)
                if hexip is not None:
                    lives[fam].add(f"{hexip}:")
        return cls(
            wanted={f: dict(v) for f, v in wanted.items()},
            live_prefixes={f: tuple(sorted(v)) for f, v in lives.items()},
        )


@dataclass(frozen=True, slots=True)
class TableCounts(Generic[K]):
    """What :func:`count_by_remote` found in one table."""

    #: key -> SPEC state -> count (own sockets excluded); only keys seen are present
    counts: Mapping[K, Mapping[str, int]] = field(default_factory=dict)
    #: remote ports of live (ESTABLISHED / SYN_SENT) sockets to a ``live_ips`` address
    live_ports: frozenset[int] = frozenset()
    #: lines (header excluded) not in the kernel's layout, skipped
    malformed: int = 0
    #: lines understood
    sockets: int = 0


def _data_lines(text: str) -> tuple[str, int]:
    """(text to scan, data lines). The scanned text always starts at a newline, so
    that the first data line is found like every other one."""
    end = len(text)
    while end and text[end - 1] in " \t\r\n":  # bounded: trailing padding only
        end -= 1
    first_nl = text.find("\n", 0, end)
    first = text[: first_nl if first_nl >= 0 else end]
    lines = text.count("\n", 0, end) + (1 if end else 0)
    if "local_address" in first:
        return text, lines - 1
    return "\n" + text, lines


def count_by_remote(
    text: str,
    matcher: RemoteMatcher[K],
    *,
    family: Family,
    exclude_inodes: Collection[int] = frozenset(),
) -> TableCounts[K]:
    """Tally one table's sockets by wanted remote endpoint and state.

    ``family`` is 4 for ``/proc/net/tcp``, 6 for ``/proc/net/tcp6``. Sockets whose
    inode is in ``exclude_inodes`` are left out of both ``counts`` and ``live_ports``.
    """
    hexlen = HEX_LEN[family]
    scan, data_lines = _data_lines(text)
    keys = KEY_PATTERNS[family].findall(scan)
    tally = Counter(keys)
    if keys and exclude_inodes:
        tally.subtract(own_keys(scan, exclude_inodes, family))

    counts: dict[K, dict[str, int]] = {}
    for text_key, (key, state) in matcher.wanted[family].items():
        n = tally.get(text_key, 0)
        if n > 0:
            per_state = counts.setdefault(key, {})
            per_state[state] = per_state.get(state, 0) + n
    live_ports: set[int] = set()
    prefixes = matcher.live_prefixes[family]
    if prefixes:
        # filter() with a C method: no Python code runs for the other distinct keys
        for text_key in filter(methodcaller("startswith", prefixes), tally):
            if tally[text_key] > 0 and text_key[-2:] in LIVE_KERNEL_STATES:
                live_ports.add(int(text_key[hexlen + 1 : hexlen + 5], 16))
    return TableCounts(
        counts=counts,
        live_ports=frozenset(live_ports),
        malformed=max(data_lines - len(keys), 0),
        sockets=len(keys),
    )


def iter_sockets(text: str) -> Iterator[TcpSocket]:
    """Decode every well-formed line of either table (slow; for tests and debugging)."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":"):
            continue
        try:
            local, local_port = fields[1].split(":")
            remote, remote_port = fields[2].split(":")
            st = fields[3]
            if len(st) != 2 or len(local_port) != 4 or len(remote_port) != 4:
                continue
            yield TcpSocket(
                local_ip=decode_address(local),
                local_port=int(local_port, 16),
                remote_ip=decode_address(remote),
                remote_port=int(remote_port, 16),
                kernel_state=st.upper(),
                state=KERNEL_STATES.get(st.upper(), "other"),
                inode=int(fields[9]),
            )
        except ValueError:
            continue
