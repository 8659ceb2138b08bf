"""The kernel-side filter of the sock_diag dump (``remote_filter``).

The program is checked three ways: against a model of the kernel's audit and
interpreter (``inet_diag_bc_audit`` and ``inet_diag_bc_run`` in net/ipv4/inet_diag.c,
for the two ops depwatch emits), by showing that counting only what it passes gives
the same counts as counting everything, and by the live kernel accepting it and
returning only the matching sockets.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.sockets.sock_diag import (
    INET_DIAG_REQ_BYTECODE,
    MAX_FILTER_BYTES,
    DiagMatcher,
    DiagTally,
    Record,
    dump_tcp,
    remote_filter,
    request,
)

OP = struct.Struct("=BBH")
HOSTCOND = struct.Struct("=BBxxi")
JMP, D_COND = 1, 8
MAPPED = b"\0" * 10 + b"\xff\xff"
ADDR_LEN = {socket.AF_UNSPEC: 0, socket.AF_INET: 4, socket.AF_INET6: 16}


def kernel_audit(program: bytes) -> bool:
    """inet_diag_bc_audit, restricted to JMP and D_COND: every jump is a multiple of 4,
    at least the op's size, lands on an op of the "yes" chain or at most 4 bytes past
    the end; the "yes" chain ends exactly at the end."""
    starts, offset = set(), 0
    while offset < len(program):  # the op boundaries along the "yes" chain
        starts.add(offset)
        offset += OP.unpack_from(program, offset)[1] or 4
    offset = 0
    while offset < len(program):
        left = len(program) - offset
        code, yes, no = OP.unpack_from(program, offset)
        min_len = OP.size
        if code == D_COND:
            if left < OP.size + HOSTCOND.size:
                return False
            family, prefix, _ = HOSTCOND.unpack_from(program, offset + OP.size)
            if family not in ADDR_LEN or prefix > 8 * ADDR_LEN[family]:
                return False
            min_len += HOSTCOND.size + ADDR_LEN[family]
            if left < min_len:
                return False
        elif code != JMP:
            return False
        if no < min_len or no > left + 4 or no % 4:
            return False
        if no < left and offset + no not in starts:
            return False
        if yes < min_len or yes > left + 4 or yes % 4:
            return False
        offset += yes
    return offset == len(program)


def kernel_run(program: bytes, family: int, dst: bytes, dport: int) -> bool:
    """inet_diag_bc_run for one socket: its family, 16-byte peer address and port."""
    offset, left = 0, len(program)
    for _ in range(len(program)):  # every op moves forward at least 4 bytes
        if left <= 0:
            break
        code, yes_step, no_step = OP.unpack_from(program, offset)
        yes = True
        if code == JMP:
            yes = False
        elif code == D_COND:
            cond_family, prefix, port = HOSTCOND.unpack_from(program, offset + OP.size)
            addr = program[offset + OP.size + HOSTCOND.size:][: ADDR_LEN[cond_family]]
            if port not in (-1, dport):
                yes = False
            elif cond_family not in (socket.AF_UNSPEC, family):
                yes = (family == socket.AF_INET6 and cond_family == socket.AF_INET
                       and dst[:12] == MAPPED and _prefix(dst[12:], addr, prefix))  # fmt: skip
            elif prefix:
                yes = _prefix(dst, addr, prefix)
        step = yes_step if yes else no_step
        offset, left = offset + step, left - step
    return left == 0


def _prefix(addr: bytes, cond: bytes, bits: int) -> bool:
    whole, rest = divmod(bits, 8)
    if addr[:whole] != cond[:whole]:
        return False
    mask = (0xFF << (8 - rest)) & 0xFF
    return rest == 0 or (addr[whole] & mask) == (cond[whole] & mask)


def spelled(ip: str, family: int) -> bytes:
    addr = ipaddress.ip_address(ip)
    if addr.version == 6:
        return addr.packed
    return addr.packed + bytes(12) if family == socket.AF_INET else MAPPED + addr.packed


ENDPOINTS = {("10.0.0.1", 6379): "a", ("10.0.0.2", 6380): "b", ("fd00::1", 6379): "c",
             ("10.1.0.1", 4318): "h"}  # fmt: skip
LIVE = ["10.1.0.1", "fd00::2"]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.1.0.1", "fd00::1", "fd00::2", "fd00::3"]
PORTS = [6379, 6380, 4317, 4318, 9]

records_st = st.lists(
    st.tuples(st.sampled_from(IPS), st.booleans(), st.sampled_from(PORTS),
              st.sampled_from([1, 2, 6, 8]), st.integers(0, 9)),
    max_size=30,
)  # fmt: skip


def as_records(socks: list[tuple[str, bool, int, int, int]]) -> list[Record]:
    """``dual``: an IPv4 peer seen on an AF_INET6 socket (IPv4-mapped)."""
    out: list[Record] = []
    for ip, dual, port, state, inode in socks:
        family = socket.AF_INET6 if ":" in ip or dual else socket.AF_INET
        out.append((family, state, port.to_bytes(2, "big"), spelled(ip, family), inode))
    return out


def test_one_condition_has_no_jump_and_rejects_past_the_end() -> None:
    program = remote_filter([(socket.AF_INET, spelled("10.0.0.1", socket.AF_INET), 6379)])
    assert program is not None and len(program) == 4 + 8 + 4
    assert OP.unpack_from(program) == (D_COND, 16, 20)  # no: 4 bytes past the end
    assert HOSTCOND.unpack_from(program, 4) == (socket.AF_INET, 32, 6379)
    assert program[12:] == ipaddress.ip_address("10.0.0.1").packed
    assert kernel_audit(program)


def test_any_port_ipv6_condition() -> None:
    program = remote_filter([(socket.AF_INET6, spelled("fd00::2", socket.AF_INET6), None)])
    assert program is not None and HOSTCOND.unpack_from(program, 4) == (socket.AF_INET6, 128, -1)
    assert kernel_run(program, socket.AF_INET6, spelled("fd00::2", socket.AF_INET6), 1)
    assert not kernel_run(program, socket.AF_INET6, spelled("fd00::3", socket.AF_INET6), 1)


def test_nothing_to_match_or_too_long_means_no_filter() -> None:
    assert remote_filter([]) is None
    many = [(socket.AF_INET6, spelled(f"fd00::{i:x}", socket.AF_INET6), 6379)
            for i in range(1, MAX_FILTER_BYTES // 32 + 2)]  # fmt: skip
    assert remote_filter(many) is None
    fits = remote_filter(many[: MAX_FILTER_BYTES // 32])
    assert fits is not None and len(fits) <= MAX_FILTER_BYTES and kernel_audit(fits)


def test_request_carries_the_program_as_an_attribute() -> None:
    program = remote_filter(DiagMatcher.build(ENDPOINTS, LIVE).peers())
    assert program is not None
    data = request(bytecode=program)
    assert struct.unpack_from("=I", data)[0] == len(data) == 16 + 60 + 4 + len(program)
    assert struct.unpack_from("=HH", data, 76) == (4 + len(program), INET_DIAG_REQ_BYTECODE)
    assert data[80:] == program
    assert request(bytecode=None) == request()


@settings(max_examples=300, deadline=None)
@given(socks=records_st)
def test_the_program_passes_exactly_what_the_tally_looks_at(
    socks: list[tuple[str, bool, int, int, int]],
) -> None:
    matcher = DiagMatcher.build(ENDPOINTS, LIVE)
    program = remote_filter(matcher.peers())
    assert program is not None and kernel_audit(program)
    records = as_records(socks)
    wanted = {(f, dst, int.from_bytes(p, "big")) for dst, by in matcher.endpoints.items()
              for f, p in by}  # fmt: skip
    passed = []
    for record in records:
        family, _, dport, dst, _ = record
        port = int.from_bytes(dport, "big")
        expected = (family, dst, port) in wanted or (family, dst) in matcher.live
        assert kernel_run(program, family, dst, port) == expected
        if expected:
            passed.append(record)
    everything, filtered = DiagTally(matcher), DiagTally(matcher)
    everything.add(records)
    filtered.add(passed)
    assert filtered.result().counts == everything.result().counts
    assert filtered.result().live_ports == everything.result().live_ports


def test_live_kernel_accepts_the_program_and_returns_only_matching_peers() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as wanted_srv,
        socket.create_server(("127.0.0.1", 0)) as other_srv,
        socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as dual,
    ):
        wanted, other = wanted_srv.getsockname()[1], other_srv.getsockname()[1]
        dual_port = dual.getsockname()[1]
        matcher = DiagMatcher.build({("127.0.0.1", wanted): "w", ("127.0.0.1", dual_port): "d"})
        program = remote_filter(matcher.peers())
        mapped = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        with (
            socket.create_connection(("127.0.0.1", wanted), timeout=5),
            socket.create_connection(("127.0.0.1", other), timeout=5),
            mapped,
        ):
            mapped.settimeout(5)
            mapped.connect(("::ffff:127.0.0.1", dual_port))  # an IPv4 peer, AF_INET6 socket
            records = [r for chunk in dump_tcp(bytecode=program) for r in chunk]
    ports = {int.from_bytes(r[2], "big") for r in records}
    assert wanted in ports and dual_port in ports and other not in ports
    assert any(r[0] == socket.AF_INET6 and r[3][:12] == MAPPED for r in records)
    tally = DiagTally(matcher)
    tally.add(records)
    assert tally.result().counts["w"]["established"] == 1
    assert tally.result().counts["d"]["established"] == 1


@pytest.mark.parametrize("bad", [b"\x08\x04\x08\x00", b"\x63\x04\x08\x00"])
def test_the_model_rejects_what_the_kernel_would(bad: bytes) -> None:
    """A truncated condition and an unknown op: the audit model is not vacuous."""
    assert not kernel_audit(bad)


def test_live_kernel_accepts_the_longest_program() -> None:
    many = [(socket.AF_INET6, spelled(f"fd00::{i:x}", socket.AF_INET6), 6379)
            for i in range(1, MAX_FILTER_BYTES // 32 + 1)]  # fmt: skip
    program = remote_filter(many)
    assert program is not None and len(program) > MAX_FILTER_BYTES - 32
    assert [r for chunk in dump_tcp(bytecode=program) for r in chunk] == []


def test_matcher_and_filter_are_built_once_for_the_same_targets() -> None:
    from exporter.probes.sockets import _diag_query

    targets = {("127.0.0.1", 6379): ("redis", "n1"), ("127.0.0.1", 4318): ("collector", "c")}
    hosts = frozenset({"127.0.0.1"})
    first = _diag_query(frozenset(targets.items()), hosts)
    again = _diag_query(frozenset(dict(reversed(targets.items())).items()), hosts)
    assert again is first  # the same query object: nothing rebuilt
    matcher, program = first
    assert program == remote_filter(matcher.peers()) and kernel_audit(program)
