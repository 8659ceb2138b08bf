"""Table tests for INFO and cluster topology parsers."""

import pytest

from exporter.model import Role
from exporter.redis_parse import (
    TopologyParseError,
    parse_cluster_info,
    parse_cluster_nodes,
    parse_cluster_shards,
    parse_cluster_slots,
    parse_node_info,
)

INFO = """# Server\r\nredis_version:7.0.15\r\n\r\n# Clients\r\nconnected_clients:7798\r
maxclients:65000\r\n\r\n# Stats\r\nrejected_connections:12\r\n\r\n# Replication\r\nrole:slave\r\n"""


def test_node_info() -> None:
    info = parse_node_info(INFO)
    assert (info.connected_clients, info.maxclients, info.rejected_connections, info.role) == (
        7798, 65000, 12, Role.REPLICA)


def test_node_info_missing_fields() -> None:
    info = parse_node_info("# Clients\r\nconnected_clients:x\r\n")
    assert info.connected_clients is None and info.maxclients is None and info.role is None


@pytest.mark.parametrize(("text", "expected"), [
    ("cluster_state:ok\r\ncluster_slots_ok:16384\r\n", (True, 16384)),
    ("cluster_state:fail\r\ncluster_slots_ok:10923\r\n", (False, 10923)),
    ("", (None, None)),
])  # fmt: skip
def test_cluster_info(text: str, expected: tuple) -> None:
    assert parse_cluster_info(text) == expected


def _node(node_id: str, port: int, role: str, tls_port: int | None = None, ip: str = "10.0.0.1",
          health: str = "online") -> list:
    fields = ["id", node_id, "ip", ip, "endpoint", ip, "hostname", "", "role", role,
              "replication-offset", 1, "health", health]  # fmt: skip
    if tls_port is not None:
        fields += ["tls-port", tls_port]
        if port:
            fields += ["port", port]
    else:
        fields += ["port", port]
    return fields


SHARDS = [
    ["slots", [5461, 10922], "nodes", [_node("b" * 40, 7001, "master"),
                                       _node("e" * 40, 7004, "replica")]],
    ["slots", [0, 5460], "nodes", [_node("a" * 40, 7000, "master"),
                                   _node("d" * 40, 7003, "replica", health="failed")]],
]  # fmt: skip


def test_cluster_shards_roles_and_shards() -> None:
    nodes = parse_cluster_shards(SHARDS, tls=False, fallback_host="seed")
    assert [(n.address, n.role, n.shard) for n in nodes] == [
        ("10.0.0.1:7000", Role.PRIMARY, "0-5460"),
        ("10.0.0.1:7003", Role.REPLICA, "0-5460"),
        ("10.0.0.1:7001", Role.PRIMARY, "5461-10922"),
        ("10.0.0.1:7004", Role.REPLICA, "5461-10922"),
    ]
    assert nodes[0].node_id == "a" * 40


def test_cluster_shards_tls_port_preferred() -> None:
    reply = [["slots", [0, 16383], "nodes", [_node("a" * 40, 0, "master", tls_port=6380)]]]
    (node,) = parse_cluster_shards(reply, tls=True, fallback_host="seed")
    assert node.address == "10.0.0.1:6380"


def test_cluster_shards_ipv6_and_empty_ip() -> None:
    reply = [["slots", [], "nodes", [_node("a" * 40, 7000, "master", ip="::1"),
                                     _node("b" * 40, 7001, "replica", ip="")]]]  # fmt: skip
    nodes = parse_cluster_shards(reply, tls=False, fallback_host="seed")
    assert {n.address for n in nodes} == {"[::1]:7000", "seed:7001"}
    assert all(n.shard == "noslots-aaaaaaaa" for n in nodes)


@pytest.mark.parametrize("reply", ["x", [["slots"]], [["slots", [0, 1], "nodes", [["id"]]]]])
def test_cluster_shards_malformed(reply: object) -> None:
    with pytest.raises(TopologyParseError):
        parse_cluster_shards(reply, tls=False, fallback_host="seed")


def test_cluster_slots() -> None:
    reply = [
        [0, 5460, ["10.0.0.1", 7000, "a" * 40], ["10.0.0.2", 7003, "d" * 40]],
        [5461, 16383, ["10.0.0.3", 7001, "b" * 40]],
    ]
    nodes = parse_cluster_slots(reply, fallback_host="seed")
    assert [(n.address, n.role, n.shard) for n in nodes] == [
        ("10.0.0.1:7000", Role.PRIMARY, "0-5460"),
        ("10.0.0.2:7003", Role.REPLICA, "0-5460"),
        ("10.0.0.3:7001", Role.PRIMARY, "5461-16383"),
    ]


NODES = """\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e5 :0@0 handshake,noaddr - 0 0 0 disconnected
"""


def test_cluster_nodes() -> None:
    nodes = parse_cluster_nodes(NODES, fallback_host="seed")
    assert [(n.address, n.role, n.shard) for n in nodes] == [
        ("127.0.0.1:7000", Role.PRIMARY, "0-5460"),
        ("127.0.0.1:7003", Role.REPLICA, "0-5460"),
        ("127.0.0.1:7002", Role.PRIMARY, "10923-16383"),
        ("127.0.0.1:7001", Role.PRIMARY, "5461-10922"),
    ]
