"""observe() on fixture /proc trees, and resolve_addresses()."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from socket_fixtures import table, tcp_line

from exporter.probes.sockets import endpoint_label, normalize_ip, observe, resolve_addresses
from exporter.sockets.tcp_table import STATES

ProcTree = Callable[..., Path]
ZERO = dict.fromkeys(STATES, 0)
COLLECTOR = "172.20.147.155"
APP = "10.180.6.147"


def run(root: Path, **overrides: Any):
    kwargs: dict[str, Any] = {
        "redis_nodes": {("10.0.0.1", 6379): "redis-0:6379", ("10.0.0.2", 6379): "redis-1:6379"},
        "collector": {
            (COLLECTOR, 4317): f"{COLLECTOR}:4317",
            (COLLECTOR, 4318): f"{COLLECTOR}:4318",
        },
        "collector_hosts": frozenset({COLLECTOR}),
        "own_inodes": frozenset(),
    }
    kwargs.update(overrides)
    return observe(root, **kwargs)


def test_every_label_present_with_all_states_when_nothing_seen(proc_tree: ProcTree) -> None:
    obs = run(proc_tree(tcp=table([]), tcp6=table([], family=6)))
    assert obs.error is None
    assert {k: dict(v) for k, v in obs.redis_sockets.items()} == {
        "redis-0:6379": ZERO,
        "redis-1:6379": ZERO,
    }
    assert {k: dict(v) for k, v in obs.collector_sockets.items()} == {
        f"{COLLECTOR}:4317": ZERO,
        f"{COLLECTOR}:4318": ZERO,
    }
    assert obs.collector_live_ports == frozenset()
    assert dict(obs.tcp_counters) == {
        "attempt_fails": 4,
        "estab_resets": 6,
        "retrans_segs": 9,
        "out_resets": 17,
    }


def test_v4_v6_and_mapped_are_summed_per_node(proc_tree: ProcTree) -> None:
    tcp = table(
        [
            tcp_line(0, (APP, 40000), ("10.0.0.1", 6379), "01", 11),
            tcp_line(1, (APP, 40001), ("10.0.0.1", 6379), "06", 0),
            tcp_line(2, (APP, 40002), ("10.0.0.2", 6379), "01", 13),  # ours
        ]
    )
    tcp6 = table(
        [
            tcp_line(0, ("::ffff:" + APP, 40100), ("::ffff:10.0.0.1", 6379), "01", 21, family=6),
            tcp_line(1, ("2001:db8::9", 40101), ("2001:db8::1", 6379), "08", 22, family=6),
        ],
        family=6,
    )
    nodes = {
        ("10.0.0.1", 6379): "redis-0:6379",
        ("10.0.0.2", 6379): "redis-1:6379",
        ("2001:db8::1", 6379): "redis-0:6379",  # the same node announced by name, dual-stack
    }
    obs = run(proc_tree(tcp=tcp, tcp6=tcp6), redis_nodes=nodes, own_inodes=frozenset({13}))
    assert dict(obs.redis_sockets["redis-0:6379"]) == {
        **ZERO,
        "established": 2,
        "time_wait": 1,
        "close_wait": 1,
    }
    assert dict(obs.redis_sockets["redis-1:6379"]) == ZERO
    assert obs.malformed_lines == 0


def test_collector_sockets_and_the_incident_port(proc_tree: ProcTree) -> None:
    """Configured grpc on 4317, the application really posts to 4318."""
    tcp = table(
        [
            tcp_line(0, (APP, 44920), (COLLECTOR, 4318), "01", 31),
            tcp_line(1, (APP, 44921), (COLLECTOR, 4318), "06", 0),
            tcp_line(2, (APP, 44922), (COLLECTOR, 4317), "01", 33),  # depwatch's own probe
        ]
    )
    obs = run(proc_tree(tcp=tcp, tcp6=None), own_inodes=frozenset({33}))
    assert obs.collector_live_ports == frozenset({4318})
    assert obs.collector_sockets[f"{COLLECTOR}:4318"]["established"] == 1
    assert obs.collector_sockets[f"{COLLECTOR}:4318"]["time_wait"] == 1
    assert dict(obs.collector_sockets[f"{COLLECTOR}:4317"]) == ZERO
    assert obs.error is None


def test_missing_tcp6_is_normal(proc_tree: ProcTree) -> None:
    obs = run(proc_tree(tcp=table([tcp_line(0, (APP, 1), ("10.0.0.1", 6379), "01", 5)]), tcp6=None))
    assert obs.error is None
    assert obs.redis_sockets["redis-0:6379"]["established"] == 1


def test_missing_tcp_is_an_error_without_false_zeros(proc_tree: ProcTree) -> None:
    obs = run(proc_tree(tcp=None))
    assert obs.error is not None
    assert "net/tcp" in obs.error
    assert dict(obs.redis_sockets) == {}
    assert dict(obs.collector_sockets) == {}
    assert obs.tcp_counters["estab_resets"] == 6  # snmp still read


def test_unreadable_proc_root(tmp_path: Path) -> None:
    obs = run(tmp_path / "nowhere")
    assert obs.error is not None
    assert "cannot read" in obs.error
    assert dict(obs.tcp_counters) == {}


@pytest.mark.parametrize("snmp", [None, "garbage"])
def test_bad_snmp_sets_error_keeps_sockets(proc_tree: ProcTree, snmp: str | None) -> None:
    obs = run(proc_tree(tcp=table([]), snmp=snmp))
    assert obs.error is not None
    assert "snmp" in obs.error
    assert dict(obs.tcp_counters) == {}
    assert dict(obs.redis_sockets["redis-0:6379"]) == ZERO


def test_never_raises_even_on_nonsense_targets(proc_tree: ProcTree) -> None:
    obs = run(proc_tree(tcp=table([])), redis_nodes={("10.0.0.1", "6379"): "bad"})
    assert obs.error is not None
    assert obs.error.startswith("socket table not read")


def test_malformed_lines_are_summed_over_both_tables(proc_tree: ProcTree) -> None:
    obs = run(proc_tree(tcp=table(["junk", "more junk"]), tcp6=table(["junk"], family=6)))
    assert obs.malformed_lines == 3
    assert obs.error is None


def test_non_ip_target_keeps_its_label_at_zero(proc_tree: ProcTree) -> None:
    obs = run(proc_tree(tcp=table([])), redis_nodes={("redis.unresolved", 6379): "r:6379"})
    assert dict(obs.redis_sockets) == {"r:6379": ZERO}


def test_same_label_in_redis_and_collector_maps_stay_apart(proc_tree: ProcTree) -> None:
    tcp = table([tcp_line(0, (APP, 1), ("10.0.0.9", 4317), "01", 5)])
    obs = run(
        proc_tree(tcp=tcp),
        redis_nodes={("10.0.0.1", 6379): "x"},
        collector={("10.0.0.9", 4317): "x"},
        collector_hosts=frozenset({"10.0.0.9"}),
    )
    assert obs.redis_sockets["x"]["established"] == 0
    assert obs.collector_sockets["x"]["established"] == 1


# ------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("ip", "port", "label"),
    [
        ("10.0.0.1", 4317, "10.0.0.1:4317"),
        ("::ffff:10.0.0.1", 4317, "10.0.0.1:4317"),
        ("2001:DB8::1", 4318, "[2001:db8::1]:4318"),
        ("[::1]", 4318, "[::1]:4318"),
    ],
)
def test_endpoint_label(ip: str, port: int, label: str) -> None:
    assert endpoint_label(ip, port) == label


def test_normalize_ip_rejects_names() -> None:
    with pytest.raises(ValueError, match="does not appear"):
        normalize_ip("redis.example")


# ------------------------------------------------------------------------ resolving


def fake_getaddrinfo(table_: dict[str, list[str] | Exception | None]):
    async def lookup(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        answer = table_[host]
        if answer is None:
            await asyncio.sleep(3600)  # hangs; the time limit must cut it
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, list)
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in answer
        ]

    return lookup


@pytest.mark.asyncio
async def test_resolve_hostnames_to_node_labels() -> None:
    lookup = fake_getaddrinfo(
        {
            "redis-0.cache": ["10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1"],
            "gone.cache": socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "slow.cache": None,
        }
    )
    got = await resolve_addresses(
        {
            ("redis-0.cache", 6379): "redis-0.cache:6379",
            ("gone.cache", 6379): "gone.cache:6379",
            ("slow.cache", 6379): "slow.cache:6379",
            ("10.0.0.7", 6380): "10.0.0.7:6380",
        },
        time_limit=0.2,
        getaddrinfo=lookup,
    )
    assert got == {
        ("10.0.0.1", 6379): "redis-0.cache:6379",
        ("2001:db8::1", 6379): "redis-0.cache:6379",
        ("10.0.0.7", 6380): "10.0.0.7:6380",
    }


@pytest.mark.asyncio
async def test_resolve_collector_pairs_label_by_resolved_address() -> None:
    lookup = fake_getaddrinfo({"otel-collector": [COLLECTOR, "fd00::5"]})
    pairs = [("otel-collector", p) for p in (4317, 4318)]
    got = await resolve_addresses(pairs, getaddrinfo=lookup)
    assert got == {
        (COLLECTOR, 4317): f"{COLLECTOR}:4317",
        (COLLECTOR, 4318): f"{COLLECTOR}:4318",
        ("fd00::5", 4317): "[fd00::5]:4317",
        ("fd00::5", 4318): "[fd00::5]:4318",
    }


@pytest.mark.asyncio
async def test_resolve_first_label_wins_and_concurrency_is_bounded() -> None:
    running = 0
    peak = 0

    async def lookup(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port))]

    hosts = {(f"alias{i}", 6379): f"alias{i}:6379" for i in range(10)}
    got = await resolve_addresses(hosts, concurrency=3, getaddrinfo=lookup)
    assert got == {("10.0.0.1", 6379): "alias0:6379"}
    assert peak <= 3


@pytest.mark.asyncio
async def test_resolve_localhost_for_real() -> None:
    got = await resolve_addresses({("localhost", 6379): "localhost:6379"}, time_limit=5)
    assert got
    assert set(got.values()) == {"localhost:6379"}
    assert {ip for ip, _ in got} <= {"127.0.0.1", "::1"}
