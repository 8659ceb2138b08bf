"""The pod's TCP sockets from a ``NETLINK_SOCK_DIAG`` dump: what ``ss`` reads.

Why not only ``/proc/net/tcp{,6}``: for those files the kernel formats a text line per
socket and, page by page, walks its whole established hash (262,144 buckets on a
24 GiB machine, whatever the pod holds), once for each file. That cost about 7 ms per
cycle, a quarter of depwatch's CPU. One dump of the same sockets costs about 1.6 ms
and leaves LISTEN sockets (never a connection to Redis or the collector) in the
kernel.

The request is the original ``TCPDIAG_GETSOCK`` form, which ``ss`` itself sends when
no family is given: its family is AF_UNSPEC, so IPv4 and IPv6 sockets come back from
one walk of the hash. The newer ``SOCK_DIAG_BY_FAMILY`` takes one family per dump and
so walks the hash twice (2.6 ms).

:func:`dump_tcp` does the I/O, one blocking dump; everything else here is pure:
:func:`request` builds the query, :func:`remote_filter` the kernel-side filter,
:func:`parse_chunk` decodes one ``recv`` worth of replies, and :class:`DiagTally`
reduces them to :class:`~exporter.sockets.tcp_table.TableCounts`, the shape the
``/proc`` reader produces, so the two sources are interchangeable.

The filter is an ``INET_DIAG_REQ_BYTECODE`` program, as ``ss dst ...`` sends: the
kernel still walks its whole hash, but it returns only the sockets whose peer is a
wanted endpoint (or a collector address), so neither netlink nor Python handles
the rest. A pod with 2,000 sockets to elsewhere costs the same as one with none.
"""

from __future__ import annotations

import errno as errno_codes
import ipaddress
import socket
import struct
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from exporter.sockets.tcp_table import KERNEL_STATES, TableCounts

__all__ = [
    "MAX_FILTER_BYTES",
    "MESSAGE_SIZE",
    "DiagMatcher",
    "DiagTally",
    "Record",
    "SockDiagError",
    "dump_tcp",
    "parse_chunk",
    "remote_filter",
    "request",
]

K = TypeVar("K", bound=Hashable)

NETLINK_SOCK_DIAG = 4  # linux/netlink.h (also NETLINK_INET_DIAG)
TCPDIAG_GETSOCK = 18  # linux/inet_diag.h: the request, and the type of its replies
SOCK_DIAG_BY_FAMILY = 20  # linux/sock_diag.h: replies to the per-family request
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10  # include/net/tcp_states.h
#: states 1 (ESTABLISHED) to 12 (NEW_SYN_RECV) but LISTEN, a bit per state number.
#: Asking for LISTEN or 13 (BOUND_INACTIVE, Linux 6.8+) makes the kernel walk its
#: listening and bind hashes too (+0.3 ms); neither kind of socket has a peer.
STATES_BUT_LISTEN = ((1 << 13) - 1) & ~(1 << TCP_LISTEN) & ~1

INET_DIAG_REQ_BYTECODE = 1  # linux/inet_diag.h: the request attribute with a filter
INET_DIAG_BC_JMP = 1  # filter op: always take the "no" jump
INET_DIAG_BC_D_COND = 8  # filter op: the peer matches a hostcond
#: the longest filter: its attribute's length and the jumps over it are 16 bits
MAX_FILTER_BYTES = 0xFFF8

#: nlmsghdr: length, type, flags, sequence, port id
_HEADER = struct.Struct("=IHHII")
#: nlattr: length, type
_ATTR = struct.Struct("=HH")
#: inet_diag_bc_op: code, yes (bytes forward when true), no (bytes forward when false)
_OP = struct.Struct("=BBH")
#: inet_diag_hostcond: family, prefix length in bits, padding, port (-1: any)
_HOSTCOND = struct.Struct("=BBxxi")
#: inet_diag_req: family, src_len, dst_len, ext, a zeroed inet_diag_sockid, states, dbs
_REQUEST = struct.Struct("=BBBB48xII")
#: inet_diag_msg (72 bytes): family, state, dport (network order, kept raw), dst, inode
_MESSAGE = struct.Struct("=BB4x2s16x16s28xI")
MESSAGE_SIZE = _MESSAGE.size
_ERRNO = struct.Struct("=i")

#: (family, kernel state, dport as 2 raw bytes, dst as 16 raw bytes, inode)
Record = tuple[int, int, bytes, bytes, int]

#: kernel state number -> SPEC state label
_STATE_LABEL: Mapping[int, str] = {int(k, 16): v for k, v in KERNEL_STATES.items()}
_LIVE_STATES = frozenset({1, 2})  # ESTABLISHED, SYN_SENT
_RECV_BYTES = 1 << 16
_SOCKET_TYPES = frozenset({TCPDIAG_GETSOCK, SOCK_DIAG_BY_FAMILY})
#: bound on recv() calls per dump: 50,000 chunks of >= 1 message is far past any pod
MAX_CHUNKS = 50_000
_MAPPED = b"\0" * 10 + b"\xff\xff"


class SockDiagError(OSError):
    """The dump could not be made or the kernel refused it."""


def request(
    *, states: int = STATES_BUT_LISTEN, sequence: int = 1, bytecode: bytes | None = None
) -> bytes:
    """A TCPDIAG_GETSOCK dump request for the TCP sockets of every family, with
    ``bytecode`` (from :func:`remote_filter`) as its filter when given."""
    body = _REQUEST.pack(socket.AF_UNSPEC, 0, 0, 0, states, 0)
    if bytecode:
        body += _ATTR.pack(_ATTR.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    return _HEADER.pack(_HEADER.size + len(body), TCPDIAG_GETSOCK,
                        NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + body  # fmt: skip


def _condition(family: int, dst: bytes, port: int | None) -> bytes:
    """One D_COND op's operand: this exact peer address (and port, unless None)."""
    addr = dst[:4] if family == socket.AF_INET else dst
    return _HOSTCOND.pack(family, 8 * len(addr), -1 if port is None else port) + addr


def remote_filter(peers: Iterable[tuple[int, bytes, int | None]]) -> bytes | None:
    """A filter program passing a socket whose (family, 16-byte dst, port) is one of
    ``peers`` (port None: any port), in the spelling of :class:`DiagMatcher`.

    The kernel runs it op by op: a condition that holds steps onto the JMP after it,
    which jumps to the end (accept); one that fails skips that JMP to the next
    condition. The last condition's failure jumps 4 bytes past the end: reject. The
    kernel audits the program on the request (every jump lands on an op or the end).
    None when there is nothing to match or the program would be too long to jump
    over; the dump is then unfiltered and :class:`DiagTally` alone picks the sockets.
    """
    operands = [_condition(*peer) for peer in dict.fromkeys(peers)]
    if not operands:
        return None
    size = sum(_OP.size + len(o) for o in operands) + _OP.size * (len(operands) - 1)
    if size > MAX_FILTER_BYTES:
        return None
    program = bytearray()
    for i, operand in enumerate(operands):
        step = _OP.size + len(operand)
        program += _OP.pack(INET_DIAG_BC_D_COND, step, step + _OP.size) + operand
        if i < len(operands) - 1:
            program += _OP.pack(INET_DIAG_BC_JMP, _OP.size, size - len(program))
    return bytes(program)


def parse_chunk(data: bytes) -> tuple[list[Record], bool, int]:
    """(records, the dump is done, malformed messages) from one ``recv``.

    Raises :class:`SockDiagError` when the kernel answered with an error.
    """
    records: list[Record] = []
    malformed = 0
    offset, end = 0, len(data)
    while offset + _HEADER.size <= end:
        length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > end:
            return records, False, malformed + 1  # the rest of the chunk cannot be framed
        if kind == NLMSG_DONE:
            return records, True, malformed
        if kind == NLMSG_ERROR:
            code = 0
            if length >= _HEADER.size + _ERRNO.size:
                code = -_ERRNO.unpack_from(data, offset + _HEADER.size)[0]
            name = errno_codes.errorcode.get(code, str(code))
            raise SockDiagError(code, f"sock_diag dump refused ({name})")
        if kind in _SOCKET_TYPES and length >= _HEADER.size + MESSAGE_SIZE:
            records.append(_MESSAGE.unpack_from(data, offset + _HEADER.size))
        else:
            malformed += 1
        offset += (length + 3) & ~3
    return records, False, malformed


def dump_tcp(*, timeout: float = 1.0, bytecode: bytes | None = None) -> Iterator[list[Record]]:
    """The TCP sockets (IPv4 and IPv6, all states but LISTEN) of this process's
    network namespace that ``bytecode`` passes (all without one), one list per
    ``recv``. Blocking; raises :class:`SockDiagError` (an OSError) when netlink is
    unavailable, refuses, stalls or never ends."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as exc:  # AttributeError: no AF_NETLINK here
        raise SockDiagError(errno_codes.EAFNOSUPPORT, f"no sock_diag socket: {exc}") from exc
    with sock:
        try:
            sock.settimeout(timeout)
            sock.send(request(bytecode=bytecode))
            for _ in range(MAX_CHUNKS):
                records, done, malformed = parse_chunk(sock.recv(_RECV_BYTES))
                if malformed:
                    raise SockDiagError(errno_codes.EBADMSG, "sock_diag reply malformed")
                yield records
                if done:
                    return
        except SockDiagError:
            raise
        except OSError as exc:  # includes TimeoutError
            raise SockDiagError(exc.errno or 0, f"sock_diag dump failed: {exc}") from exc
    raise SockDiagError(errno_codes.EOVERFLOW, f"sock_diag dump did not end in {MAX_CHUNKS} reads")


def _dst_forms(ip: str) -> list[tuple[int, bytes]]:
    """(family, 16-byte dst) spellings of ``ip`` in the kernel's replies: an IPv4 peer
    is ``a.b.c.d`` plus zeros on an AF_INET socket, ``::ffff:a.b.c.d`` on AF_INET6."""
    try:
        addr = ipaddress.ip_address(ip.strip("[]").partition("%")[0])
    except ValueError:
        return []
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        return [(socket.AF_INET, addr.packed + bytes(12)), (socket.AF_INET6, _MAPPED + addr.packed)]
    return [(socket.AF_INET6, addr.packed)]


@dataclass(frozen=True, slots=True)
class DiagMatcher(Generic[K]):
    """Wanted remote endpoints in the kernel's binary spelling. Build once per cycle."""

    #: 16-byte dst -> (family, 2-byte port) -> key
    endpoints: Mapping[bytes, Mapping[tuple[int, bytes], K]]
    #: (family, 16-byte dst) whose live sockets' remote ports are reported
    live: frozenset[tuple[int, bytes]]
    #: every dst in either of the above: the one lookup most sockets fail
    interesting: frozenset[bytes]

    @classmethod
    def build(
        cls, endpoints: Mapping[tuple[str, int], K], live_ips: Iterable[str] = ()
    ) -> DiagMatcher[K]:
        """Same contract as :meth:`exporter.sockets.tcp_table.RemoteMatcher.build`."""
        wanted: dict[bytes, dict[tuple[int, bytes], K]] = {}
        for (ip, port), key in endpoints.items():
            if not 0 <= port <= 0xFFFF:
                continue
            for family, dst in _dst_forms(ip):
                wanted.setdefault(dst, {}).setdefault((family, port.to_bytes(2, "big")), key)
        live = frozenset(form for ip in live_ips for form in _dst_forms(ip))
        return cls(
            endpoints=wanted,
            live=live,
            interesting=frozenset(wanted) | {dst for _, dst in live},
        )

    def peers(self) -> list[tuple[int, bytes, int | None]]:
        """What :func:`remote_filter` needs to pass every socket this matcher counts:
        each endpoint in each family's spelling, and the live addresses on any port."""
        exact = [(family, dst, int.from_bytes(port, "big"))
                 for dst, by_port in self.endpoints.items() for family, port in by_port]
        return [*exact, *((family, dst, None) for family, dst in sorted(self.live))]  # fmt: skip


@dataclass
class DiagTally(Generic[K]):
    """Counts records, chunk by chunk, into :class:`TableCounts`."""

    matcher: DiagMatcher[K]
    exclude_inodes: Collection[int] = frozenset()
    counts: dict[K, dict[str, int]] = field(default_factory=dict)
    live_ports: set[int] = field(default_factory=set)
    sockets: int = 0

    def add(self, records: Iterable[Record]) -> None:
        interesting = self.matcher.interesting
        endpoints = self.matcher.endpoints
        live = self.matcher.live
        own = self.exclude_inodes
        n = 0
        for family, state, dport, dst, inode in records:
            n += 1
            if dst not in interesting or (inode and inode in own):
                continue
            key = endpoints.get(dst, {}).get((family, dport))
            if key is not None:
                label = _STATE_LABEL.get(state, "other")
                per_state = self.counts.setdefault(key, {})
                per_state[label] = per_state.get(label, 0) + 1
            if state in _LIVE_STATES and (family, dst) in live:
                self.live_ports.add(int.from_bytes(dport, "big"))
        self.sockets += n

    def result(self) -> TableCounts[K]:
        return TableCounts(
            counts=self.counts,
            live_ports=frozenset(self.live_ports),
            malformed=0,
            sockets=self.sockets,
        )
