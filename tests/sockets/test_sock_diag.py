"""The sock_diag reader: request layout, reply parsing, counting, and that it counts
exactly what the /proc/net/tcp{,6} reader counts for the same sockets."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from socket_fixtures import table, tcp_line

from exporter.probes import sockets as sockets_probe
from exporter.probes.sockets import observe
from exporter.sockets.sock_diag import (
    MESSAGE_SIZE,
    STATES_BUT_LISTEN,
    DiagMatcher,
    DiagTally,
    SockDiagError,
    dump_tcp,
    parse_chunk,
    request,
)
from exporter.sockets.tcp_table import RemoteMatcher, count_by_remote

HEADER = struct.Struct("=IHHII")


SHUTDOWN_ATTR = b"\x08\x00\x08\x00\x00\x00\x00\x00"  # INET_DIAG_SHUTDOWN, as full sockets carry


def message(
    remote: tuple[str, int], state: int, inode: int, *, family: int = socket.AF_INET,
    local: tuple[str, int] = ("10.9.9.9", 40000), attrs: bytes = SHUTDOWN_ATTR, kind: int = 18,
) -> bytes:  # fmt: skip
    """One reply as the kernel frames it (inet_diag_msg + attributes); ``kind`` is the
    request's type: 18 for TCPDIAG_GETSOCK, 20 for SOCK_DIAG_BY_FAMILY."""

    def packed(ip: str) -> bytes:
        addr = ipaddress.ip_address(ip)
        if family == socket.AF_INET:
            return addr.packed + bytes(12)
        if addr.version == 4:
            return b"\0" * 10 + b"\xff\xff" + addr.packed
        return addr.packed

    body = b"".join([
        struct.pack("=BBBB", family, state, 0, 0),
        struct.pack(">HH", local[1], remote[1]),
        packed(local[0]),
        packed(remote[0]),
        struct.pack("=I8sIIIII", 0, b"\xff" * 8, 0, 0, 0, 1000, inode),
        attrs,
    ])  # fmt: skip
    assert len(body) == MESSAGE_SIZE + len(attrs)
    return HEADER.pack(16 + len(body), kind, 2, 1, 0) + body


def done() -> bytes:
    return HEADER.pack(20, 3, 2, 1, 0) + b"\0\0\0\0"


def error(code: int) -> bytes:
    return HEADER.pack(36, 2, 0, 1, 0) + struct.pack("=i", -code) + bytes(16)


def test_request_layout() -> None:
    """struct inet_diag_req under TCPDIAG_GETSOCK, every family: what ``ss`` sends."""
    data = request(sequence=7)
    length, kind, flags, seq, pid = HEADER.unpack_from(data)
    assert (length, kind, flags, seq, pid) == (len(data), 18, 0x301, 7, 0)
    assert len(data) == 16 + 60
    family, src_len, dst_len, ext = struct.unpack_from("=BBBB", data, 16)
    assert (family, src_len, dst_len, ext) == (socket.AF_UNSPEC, 0, 0, 0)
    assert data[20:68] == bytes(48)  # no socket id filter
    states, dbs = struct.unpack_from("=II", data, 68)
    assert (states, dbs) == (STATES_BUT_LISTEN, 0)
    assert not STATES_BUT_LISTEN & (1 << 10)  # no LISTEN
    assert STATES_BUT_LISTEN & 0b10 and STATES_BUT_LISTEN & (1 << 6)  # ESTABLISHED, TIME_WAIT


def test_parse_chunk_records_and_done() -> None:
    data = message(("10.0.0.1", 6379), 1, 11) + message(("10.0.0.1", 6379), 6, 0, attrs=b"",
                                                        kind=20)  # fmt: skip
    records, finished, malformed = parse_chunk(data + done())
    assert finished and malformed == 0
    assert [(r[0], r[1], r[2], r[4]) for r in records] == [
        (socket.AF_INET, 1, (6379).to_bytes(2, "big"), 11),
        (socket.AF_INET, 6, (6379).to_bytes(2, "big"), 0),
    ]
    assert records[0][3] == ipaddress.ip_address("10.0.0.1").packed + bytes(12)
    records, finished, _ = parse_chunk(data)
    assert len(records) == 2 and not finished


def test_parse_chunk_error_names_the_errno() -> None:
    with pytest.raises(SockDiagError, match=r"refused \(ENOENT\)") as caught:
        parse_chunk(error(errno.ENOENT))
    assert caught.value.errno == errno.ENOENT


@pytest.mark.parametrize(
    "data",
    [
        HEADER.pack(8, 20, 0, 0, 0),  # shorter than its own header
        HEADER.pack(400, 20, 0, 0, 0) + bytes(20),  # longer than the chunk
        HEADER.pack(40, 20, 0, 0, 0) + bytes(24),  # too short for an inet_diag_msg
        HEADER.pack(88, 99, 0, 0, 0) + bytes(72),  # a type we did not ask for
    ],
)
def test_parse_chunk_malformed_is_counted_never_raises(data: bytes) -> None:
    records, finished, malformed = parse_chunk(data)
    assert (records, finished, malformed) == ([], False, 1)


def test_tally_states_own_inodes_mapped_and_live_ports() -> None:
    node, collector = ("10.0.0.1", 6379), "10.1.0.1"
    matcher = DiagMatcher.build({node: "n1", (collector, 4318): "c"}, [collector])
    tally = DiagTally(matcher, exclude_inodes=frozenset({99}))
    tally.add(parse_chunk(b"".join([
        message(node, 1, 11),
        message(node, 1, 12, family=socket.AF_INET6),  # IPv4-mapped on a dual-stack socket
        message(node, 1, 99),  # depwatch's own: left out
        message(node, 6, 0),  # TIME_WAIT: inode 0, never excluded
        message(node, 8, 13),
        message(node, 14, 14),  # a state this code does not know: "other"
        message(("10.0.0.2", 6379), 1, 15),  # not wanted
        message((collector, 4318), 1, 16),
        message((collector, 4317), 2, 17),  # SYN_SENT to another collector port: live
        message((collector, 9999), 6, 0),  # TIME_WAIT: not live
        message((collector, 4319), 1, 99),  # own: not live
    ]))[0])  # fmt: skip
    result = tally.result()
    assert result.counts == {
        "n1": {"established": 2, "time_wait": 1, "close_wait": 1, "other": 1},
        "c": {"established": 1},
    }
    assert result.live_ports == frozenset({4318, 4317})
    assert result.sockets == 11 and result.malformed == 0


def test_ipv6_endpoint_and_unparseable_targets() -> None:
    matcher = DiagMatcher.build({("fd00::1", 6379): "v6", ("redis-0", 6379): "name",
                                 ("10.0.0.1", 70000): "badport"})  # fmt: skip
    tally = DiagTally(matcher)
    tally.add(parse_chunk(message(("fd00::1", 6379), 1, 5, family=socket.AF_INET6))[0])
    assert tally.result().counts == {"v6": {"established": 1}}


# -- the same sockets through both readers -------------------------------------------

IPS = ["10.0.0.1", "10.0.0.2", "10.1.0.1", "fd00::1", "fd00::2"]
PORTS = [6379, 6380, 4317, 4318]
KERNEL_STATES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]  # LISTEN is not asked of netlink

sockets_st = st.lists(
    st.tuples(
        st.sampled_from(IPS), st.sampled_from(PORTS), st.sampled_from(KERNEL_STATES),
        st.integers(0, 40), st.booleans(),
    ),
    max_size=40,
)  # fmt: skip


def both_tables(socks: list[tuple[str, int, int, int, bool]]) -> tuple[str, str, bytes]:
    """(tcp text, tcp6 text, netlink replies) for the same sockets. ``dual``: an IPv4
    peer on an AF_INET6 socket (IPv4-mapped)."""
    v4, v6, replies = [], [], []
    for i, (ip, port, state, any_inode, dual) in enumerate(socks):
        inode = 0 if state in (3, 6, 12) else any_inode  # request and TIME_WAIT sockets
        is_v6 = ":" in ip or dual
        family = socket.AF_INET6 if is_v6 else socket.AF_INET
        shown = f"::ffff:{ip}" if dual and ":" not in ip else ip
        local = ("fd00::9", 40000 + i) if is_v6 else ("10.9.9.9", 40000 + i)
        line = tcp_line(i, local, (shown, port), f"{state:02X}", inode, family=6 if is_v6 else 4)
        (v6 if is_v6 else v4).append(line)
        replies.append(message((ip, port), state, inode, family=family, local=local))
    return table(v4), table(v6, family=6), b"".join(replies) + done()


@settings(max_examples=200, deadline=None)
@given(socks=sockets_st, own=st.frozensets(st.integers(1, 40), max_size=5))
def test_sock_diag_counts_what_proc_counts(
    socks: list[tuple[str, int, int, int, bool]], own: frozenset[int]
) -> None:
    endpoints = {("10.0.0.1", 6379): "a", ("10.0.0.2", 6380): "b", ("fd00::1", 6379): "c",
                 ("10.1.0.1", 4317): "g", ("10.1.0.1", 4318): "h"}  # fmt: skip
    live_ips = ["10.1.0.1", "fd00::2"]
    tcp, tcp6, replies = both_tables(socks)
    files = RemoteMatcher.build(endpoints, live_ips)
    from_files: dict[str, dict[str, int]] = {}
    live_files: set[int] = set()
    for text, family in ((tcp, 4), (tcp6, 6)):
        counted = count_by_remote(text, files, family=family, exclude_inodes=own)  # type: ignore[arg-type]
        for key, per_state in counted.counts.items():
            for state, n in per_state.items():
                from_files.setdefault(key, {}).setdefault(state, 0)
                from_files[key][state] += n
        live_files |= counted.live_ports
    tally = DiagTally(DiagMatcher.build(endpoints, live_ips), own)
    records, finished, malformed = parse_chunk(replies)
    tally.add(records)
    assert finished and malformed == 0
    assert tally.result().counts == from_files
    assert tally.result().live_ports == live_files


# -- observe(): the choice of reader and the fallback --------------------------------


def run_observe(root: Path, *, sock_diag: bool):
    return observe(
        root, redis_nodes={("10.0.0.1", 6379): "n1"}, collector={}, collector_hosts=frozenset(),
        own_inodes=frozenset(), sock_diag=sock_diag,
    )  # fmt: skip


def test_observe_falls_back_to_the_files_and_says_why(
    proc_tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(**_: object) -> Iterator[list[object]]:
        raise SockDiagError(errno.EPERM, "sock_diag dump refused (EPERM)")
        yield []  # pragma: no cover

    monkeypatch.setattr(sockets_probe, "dump_tcp", refused)
    root = proc_tree(tcp=table([tcp_line(0, ("10.9.9.9", 1), ("10.0.0.1", 6379), "01", 5)]))
    obs = run_observe(root, sock_diag=True)
    assert obs.source == "proc" and obs.error is None
    assert obs.sock_diag_error == "sock_diag dump refused (EPERM)"
    assert obs.redis_sockets["n1"]["established"] == 1


def test_observe_reads_the_files_when_asked(proc_tree) -> None:
    root = proc_tree(tcp=table([tcp_line(0, ("10.9.9.9", 1), ("10.0.0.1", 6379), "01", 5)]))
    obs = run_observe(root, sock_diag=False)
    assert obs.source == "proc" and obs.redis_sockets["n1"]["established"] == 1


def test_dump_tcp_live_sees_both_families_in_one_dump() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as srv4,
        socket.create_server(("::1", 0), family=socket.AF_INET6) as srv6,
    ):
        port4, port6 = srv4.getsockname()[1], srv6.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port4), timeout=5),
            socket.create_connection(("::1", port6), timeout=5),
        ):
            records = [r for chunk in dump_tcp() for r in chunk]
    v4 = (socket.AF_INET, 1, port4.to_bytes(2, "big"),
          ipaddress.ip_address("127.0.0.1").packed + bytes(12))  # fmt: skip
    v6 = (socket.AF_INET6, 1, port6.to_bytes(2, "big"), ipaddress.ip_address("::1").packed)
    assert any(r[:4] == v4 and r[4] > 0 for r in records)
    assert any(r[:4] == v6 and r[4] > 0 for r in records)
    assert not any(r[1] == 10 for r in records)  # LISTEN stays in the kernel


@pytest.mark.asyncio
async def test_socket_part_warns_once_then_reads_the_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from structlog.testing import capture_logs

    from exporter.config import load_settings
    from exporter.logs import get_logger
    from exporter.socket_cycle import SocketPart

    calls: list[int] = []

    def refused(**_: object) -> Iterator[list[object]]:
        calls.append(1)
        raise SockDiagError(errno.EPERM, "sock_diag dump refused (EPERM)")
        yield []  # pragma: no cover

    monkeypatch.setattr(sockets_probe, "dump_tcp", refused)
    part = SocketPart(load_settings({"REDIS_ADDRESS": "127.0.0.1:6379"}), log=get_logger())
    with capture_logs() as logs:
        first = await part(None)
        second = await part(None)
    assert first["sockets"].source == "proc" and second["sockets"].source == "proc"
    assert calls == [1]  # tried once, then the files for good
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [w["event"] for w in warnings] == [
        "sock_diag unavailable, reading the socket table from /proc"
    ]
    assert warnings[0]["error"] == "sock_diag dump refused (EPERM)"


@pytest.mark.asyncio
async def test_socket_part_uses_the_files_for_another_proc_root(
    proc_tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter.config import load_settings
    from exporter.logs import get_logger
    from exporter.socket_cycle import SocketPart

    monkeypatch.setattr(sockets_probe, "dump_tcp", None)  # would fail if called
    settings = load_settings({"REDIS_ADDRESS": "127.0.0.1:6379",
                              "DEPWATCH_PROC_ROOT": str(proc_tree())})  # fmt: skip
    result = await SocketPart(settings, log=get_logger())(None)
    assert result["sockets"].source == "proc" and result["sockets"].error is None
