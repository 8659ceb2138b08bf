"""Table-driven tests of the /proc/net/tcp{,6} parser."""

from __future__ import annotations

import random
import re
import sys
import time
from collections import Counter

import pytest
from socket_fixtures import table, tcp_line

from exporter.sockets.addresses import address_hex, decode_address
from exporter.sockets.own_lines import trie_alternation
from exporter.sockets.tcp_table import (
    KERNEL_STATES,
    STATES,
    RemoteMatcher,
    count_by_remote,
    iter_sockets,
)

LOCAL = ("10.1.2.3", 40000)
NODE = ("10.0.0.1", 6379)
NODE6 = ("2001:db8::1", 6379)
LITTLE = sys.byteorder == "little"


def counts_for(text: str, endpoints: dict, *, family: int = 4, own=frozenset(), live=()):
    matcher = RemoteMatcher.build(endpoints, live)
    return count_by_remote(text, matcher, family=family, exclude_inodes=own)


# ------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("ip", "family", "little", "big"),
    [
        ("127.0.0.1", 4, "0100007F", "7F000001"),
        ("10.0.0.1", 4, "0100000A", "0A000001"),
        ("10.0.0.1", 6, "0000000000000000FFFF00000100000A", "00000000000000000000FFFF0A000001"),
        ("::ffff:10.0.0.1", 4, "0100000A", "0A000001"),
        ("::1", 6, "00000000000000000000000001000000", "00000000000000000000000000000001"),
        (
            "[2001:db8::1]",
            6,
            "B80D0120000000000000000001000000",
            "20010DB8000000000000000000000001",
        ),
        ("fe80::1%eth0", 6, "000080FE000000000000000001000000", "FE800000000000000000000000000001"),
    ],
)
def test_address_hex_matches_kernel_spelling(ip: str, family: int, little: str, big: str) -> None:
    assert address_hex(ip, family=family) == (little if LITTLE else big)  # type: ignore[arg-type]


@pytest.mark.parametrize("ip", ["2001:db8::1", "not-an-ip", "", "redis.example"])
def test_address_hex_none_when_not_in_v4_table(ip: str) -> None:
    assert address_hex(ip, family=4) is None


@pytest.mark.parametrize(
    ("ip", "back"),
    [("127.0.0.1", "127.0.0.1"), ("::ffff:10.0.0.1", "10.0.0.1"), ("2001:db8::1", "2001:db8::1")],
)
def test_decode_address_round_trips(ip: str, back: str) -> None:
    for family in (4, 6):
        hexaddr = address_hex(ip, family=family)  # type: ignore[arg-type]
        if hexaddr is not None:
            assert decode_address(hexaddr) == back


@pytest.mark.parametrize("bad", ["", "0100007", "0100007G", "01" * 20])
def test_decode_address_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several messages
        decode_address(bad)


def test_trie_alternation_matches_exactly_the_words() -> None:
    words = ["4812345", "4812399", "481", "5000001", "12"]
    pattern = re.compile(trie_alternation(words))
    for w in words:
        assert pattern.fullmatch(w)
    for w in ["4812", "48123", "5000002", "1", "123", "48123455"]:
        assert not pattern.fullmatch(w), w


# ----------------------------------------------------------------------------- states


@pytest.mark.parametrize(("hexstate", "label"), sorted(KERNEL_STATES.items()))
def test_every_kernel_state_maps_to_a_spec_state(hexstate: str, label: str) -> None:
    text = table([tcp_line(0, LOCAL, NODE, hexstate, 1234 if hexstate != "06" else 0)])
    got = counts_for(text, {NODE: "n"})
    assert label in STATES
    assert got.counts == {"n": {label: 1}}
    assert got.malformed == 0


def test_a_future_kernel_state_is_other_and_out_of_range_is_malformed() -> None:
    lines = [tcp_line(0, LOCAL, NODE, "0E", 1), tcp_line(1, LOCAL, NODE, "1A", 2)]
    got = counts_for(table(lines), {NODE: "n"})
    assert got.counts == {"n": {"other": 1}}
    assert got.malformed == 1


def test_v4_table_counts_by_state_and_ignores_other_remotes() -> None:
    lines = [
        tcp_line(0, ("0.0.0.0", 6379), ("0.0.0.0", 0), "0A", 100),  # a listener
        tcp_line(1, LOCAL, NODE, "01", 101),
        tcp_line(2, (LOCAL[0], 40001), NODE, "01", 102),
        tcp_line(3, (LOCAL[0], 40002), NODE, "06", 0),
        tcp_line(4, (LOCAL[0], 40003), NODE, "08", 104),
        tcp_line(5, (LOCAL[0], 40004), NODE, "02", 105),
        tcp_line(6, (LOCAL[0], 40005), NODE, "04", 106),
        tcp_line(7, (LOCAL[0], 40006), NODE, "05", 107),
        tcp_line(8, (LOCAL[0], 40007), ("10.0.0.1", 6380), "01", 108),  # other port
        tcp_line(9, (LOCAL[0], 40008), ("10.0.0.2", 6379), "01", 109),  # other host
        tcp_line(10, NODE, LOCAL, "01", 110),  # server side: the node is *local*
    ]
    got = counts_for(table(lines), {NODE: "n"})
    assert got.counts == {
        "n": {"established": 2, "time_wait": 1, "close_wait": 1, "syn_sent": 1, "fin_wait": 2}
    }
    assert got.malformed == 0
    assert got.sockets == len(lines)


def test_v6_table() -> None:
    lines = [
        tcp_line(0, ("2001:db8::9", 50000), NODE6, "01", 200, family=6),
        tcp_line(1, ("2001:db8::9", 50001), NODE6, "06", 0, family=6),
        tcp_line(2, ("2001:db8::9", 50002), ("2001:db8::2", 6379), "01", 202, family=6),
    ]
    got = counts_for(table(lines, family=6), {NODE6: "n6"}, family=6)
    assert got.counts == {"n6": {"established": 1, "time_wait": 1}}
    assert got.malformed == 0


@pytest.mark.parametrize("spelled", ["10.0.0.1", "::ffff:10.0.0.1", "::FFFF:10.0.0.1"])
def test_ipv4_mapped_sockets_in_tcp6_count_for_the_ipv4_address(spelled: str) -> None:
    lines = [
        tcp_line(0, ("::ffff:10.1.2.3", 50000), ("::ffff:10.0.0.1", 6379), "01", 300, family=6),
        tcp_line(1, ("::ffff:10.1.2.3", 50001), ("::ffff:10.0.0.1", 6379), "01", 301, family=6),
    ]
    got = counts_for(table(lines, family=6), {(spelled, 6379): "n"}, family=6)
    assert got.counts == {"n": {"established": 2}}


def test_ipv6_endpoint_never_matches_the_v4_table() -> None:
    text = table([tcp_line(0, LOCAL, NODE, "01", 1)])
    assert counts_for(text, {NODE6: "n6"}).counts == {}


# -------------------------------------------------------------------------- malformed

GOOD = tcp_line(0, LOCAL, NODE, "01", 500)
MALFORMED = [
    "garbage",
    "   7: 0100000A:18EB",  # truncated before the remote address
    "   8: 0100000A:18EB 0100000A:18EB",  # truncated before the state
    "   9: 0100000a:18eb 0100000a:18eb 01 00000000:00000000 00:00000000 00000000 0 0 9 1",
    "  10: 0100000A:18EB 0100000A:18EB ZZ 00000000:00000000 00:00000000 00000000 0 0 9 1",
    "  11: 0100000A18EB 0100000A:18EB 01 00000000:00000000 00:00000000 00000000 0 0 9 1",
    "  12: 01000A:18EB 01000A:18EB 01 00000000:00000000 00:00000000 00000000 0 0 9 1",
    "0100000A:18EB 0100000A:18EB 01 00000000:00000000 00:00000000 00000000 0 0 9 1",
    "\x00\xff\x7f binary junk",
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_lines_are_skipped_and_counted(bad: str) -> None:
    got = counts_for(table([GOOD, bad, GOOD.replace(" 500 ", " 501 ")]), {NODE: "n"})
    assert got.counts == {"n": {"established": 2}}
    assert got.malformed == 1


def test_all_malformed_at_once() -> None:
    got = counts_for(table(MALFORMED), {NODE: "n"})
    assert (got.counts, got.malformed, got.sockets) == ({}, len(MALFORMED), 0)


@pytest.mark.parametrize(
    "text",
    ["", "\n", table([]), table([]).rstrip("\n"), "  sl  local_address rem_address"],
)
def test_empty_tables(text: str) -> None:
    got = counts_for(text, {NODE: "n"}, own=frozenset({1, 2}), live=["10.0.0.1"])
    assert (got.counts, got.live_ports, got.malformed, got.sockets) == ({}, frozenset(), 0, 0)


@pytest.mark.parametrize("trailer", ["", "\n", "\n\n", "   \n"])
def test_line_endings_and_missing_header(trailer: str) -> None:
    body = GOOD.rstrip("\n") + trailer
    for text in (table([]) + body, body):
        got = counts_for(text, {NODE: "n"})
        assert got.counts == {"n": {"established": 1}}
        assert got.malformed == 0


def test_kernel_padding_is_not_malformed() -> None:
    # tcp4_seq_show pads every line to 149 characters with spaces
    lines = [tcp_line(i, (LOCAL[0], 40000 + i), NODE, "01", 700 + i).ljust(149) for i in range(3)]
    got = counts_for(table(lines), {NODE: "n"})
    assert got.counts == {"n": {"established": 3}}
    assert got.malformed == 0


def test_random_garbage_never_raises() -> None:
    rng = random.Random(4)
    alphabet = "0123456789ABCDEF: \n\t-xyz"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        for family in (4, 6):
            got = counts_for(text, {NODE: "n"}, family=family, own=frozenset({1, 23}))
            assert got.malformed >= 0
        assert all(s.inode >= 0 for s in iter_sockets(text))


# ----------------------------------------------------------------------- own sockets


def test_own_sockets_are_excluded_by_inode() -> None:
    lines = [
        tcp_line(0, LOCAL, NODE, "01", 4812345),  # ours
        tcp_line(1, (LOCAL[0], 40001), NODE, "01", 4812346),
        tcp_line(2, (LOCAL[0], 40002), NODE, "06", 0),  # TIME_WAIT: inode 0, never ours
        # our inode's digits in the uid column of someone else's socket
        tcp_line(3, (LOCAL[0], 40003), NODE, "01", 9999, uid=4812345),
    ]
    got = counts_for(table(lines), {NODE: "n"}, own=frozenset({4812345, 0, 7777777}))
    assert got.counts == {"n": {"established": 2, "time_wait": 1}}


def test_own_socket_whose_uid_equals_its_inode_is_excluded_once() -> None:
    lines = [
        tcp_line(0, LOCAL, NODE, "01", 4812345, uid=4812345),
        tcp_line(1, (LOCAL[0], 40001), NODE, "01", 4812346),
    ]
    got = counts_for(table(lines), {NODE: "n"}, own=frozenset({4812345}))
    assert got.counts == {"n": {"established": 1}}


def test_own_sockets_excluded_whatever_their_inode_spread() -> None:
    """Many own inode prefixes take the line-walking path; same answer."""
    own = frozenset({11100 + i * 1000003 for i in range(12)})
    lines = [
        tcp_line(i, (LOCAL[0], 40000 + i), NODE, "01", inode)
        for i, inode in enumerate([*sorted(own), 5, 6, 7])
    ]
    got = counts_for(table(lines), {NODE: "n"}, own=own)
    assert got.counts == {"n": {"established": 3}}


def test_live_ports_any_port_on_collector_ips_live_states_only() -> None:
    collector = "172.20.147.155"
    lines = [
        tcp_line(0, LOCAL, (collector, 4318), "01", 900),
        tcp_line(1, (LOCAL[0], 40001), (collector, 4319), "02", 901),
        tcp_line(2, (LOCAL[0], 40002), (collector, 4320), "06", 0),  # not live
        tcp_line(3, (LOCAL[0], 40003), (collector, 4321), "08", 903),  # not live
        tcp_line(4, (LOCAL[0], 40004), (collector, 4317), "01", 904),  # ours
        tcp_line(5, (LOCAL[0], 40005), ("172.20.147.156", 4316), "01", 905),  # other IP
    ]
    got = counts_for(
        table(lines), {(collector, 4317): "grpc"}, own=frozenset({904}), live=[collector]
    )
    assert got.live_ports == frozenset({4318, 4319})
    assert got.counts == {}


# -------------------------------------------------------------- cross-check vs oracle


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("own_count", [0, 3, 40])
def test_agrees_with_a_line_by_line_decode(family: int, own_count: int) -> None:
    rng = random.Random(family * 100 + own_count)
    remotes = [(f"10.0.{i}.1", 6379) for i in range(8)]
    if family == 6:
        remotes += [(f"2001:db8::{i:x}", 6379) for i in range(1, 5)]
    states = list(KERNEL_STATES)
    lines, inodes = [], []
    for sl in range(3000):
        remote = (
            rng.choice(remotes) if rng.random() < 0.7 else ("192.0.2.7", rng.randrange(1, 65535))
        )
        state = rng.choice(states)
        inode = 0 if state in ("06", "03") else rng.randrange(10_000, 90_000_000)
        uid = rng.choice([0, 1000, 65532, 1000680000])  # a wide uid shifts later columns
        lines.append(
            tcp_line(sl, ("10.9.9.9", 30000 + sl), remote, state, inode, family=family, uid=uid)
        )
        inodes.append(inode)
    own = frozenset(rng.sample([i for i in inodes if i], own_count))
    text = table(lines, family=family)
    endpoints = {r: f"{r[0]}:{r[1]}" for r in remotes}
    got = counts_for(text, endpoints, family=family, own=own, live=["10.0.0.1", "192.0.2.7"])

    expected: dict[str, Counter[str]] = {}
    live: set[int] = set()
    for s in iter_sockets(text):
        if s.inode in own:
            continue
        label = endpoints.get((s.remote_ip, s.remote_port))
        if label:
            expected.setdefault(label, Counter())[s.state] += 1
        if s.remote_ip in ("10.0.0.1", "192.0.2.7") and s.kernel_state in ("01", "02"):
            live.add(s.remote_port)
    assert {k: Counter(v) for k, v in got.counts.items()} == expected
    assert got.live_ports == frozenset(live)
    assert (got.malformed, got.sockets) == (0, len(lines))


def test_fifty_thousand_lines_is_quick() -> None:
    """A guard against pathological slowness (catastrophic backtracking), not a
    benchmark: bench/socket_table.py measures."""
    lines = [
        tcp_line(
            i, ("10.9.9.9", 1024 + i % 60000), (f"10.0.{i % 40}.1", 6379), "01", 10_000_000 + i
        )
        for i in range(50_000)
    ]
    text = table(lines)
    endpoints = {(f"10.0.{n}.1", 6379): f"n{n}" for n in range(40)}
    own = frozenset(10_000_000 + i for i in range(0, 50_000, 1000))
    start = time.process_time()
    got = counts_for(text, endpoints, own=own)
    elapsed = time.process_time() - start
    assert sum(sum(v.values()) for v in got.counts.values()) == 50_000 - len(own)
    assert elapsed < 2.0, f"{elapsed:.3f}s CPU for 50k lines"
