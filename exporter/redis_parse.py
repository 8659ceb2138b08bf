"""Pure parsers for Redis replies: INFO, CLUSTER INFO, CLUSTER SHARDS / SLOTS / NODES.

Replies are the RESP2 shapes redis-py returns with ``decode_responses=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.model import ClusterNode, NodeInfo, Role

__all__ = [
    "TopologyParseError",
    "parse_cluster_info",
    "parse_cluster_nodes",
    "parse_cluster_shards",
    "parse_cluster_slots",
    "parse_info",
    "parse_node_info",
]


class TopologyParseError(ValueError):
    """A cluster reply did not have the expected shape."""


def parse_info(text: str) -> dict[str, str]:
    """``key:value`` lines of INFO / CLUSTER INFO; comments and blanks skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _int(fields: dict[str, str], key: str) -> int | None:
    try:
        return int(fields[key])
    except (KeyError, ValueError):
        return None


def _role(value: str | None) -> Role | None:
    if value == "master":
        return Role.PRIMARY
    if value == "slave":
        return Role.REPLICA
    return None


def parse_node_info(text: str) -> NodeInfo:
    """The fields depwatch keeps from INFO (``maxclients`` is in INFO clients since 7.0;
    CONFIG GET is blocked on ElastiCache, so INFO is the only source)."""
    fields = parse_info(text)
    return NodeInfo(
        connected_clients=_int(fields, "connected_clients"),
        maxclients=_int(fields, "maxclients"),
        rejected_connections=_int(fields, "rejected_connections"),
        role=_role(fields.get("role")),
    )


def parse_cluster_info(text: str) -> tuple[bool | None, int | None]:
    """(cluster_state is ok, cluster_slots_ok) from CLUSTER INFO."""
    fields = parse_info(text)
    state = fields.get("cluster_state")
    return (None if state is None else state == "ok"), _int(fields, "cluster_slots_ok")


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    if not isinstance(flat, list | tuple) or len(flat) % 2:
        raise TopologyParseError("expected a flat key/value list")
    return {str(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _announced_host(node: dict[str, Any], fallback: str) -> str:
    for key in ("endpoint", "ip", "hostname"):
        value = node.get(key)
        if isinstance(value, str) and value and value != "?":
            return value
    return fallback


def parse_cluster_shards(reply: Any, *, tls: bool, fallback_host: str) -> tuple[ClusterNode, ...]:
    """CLUSTER SHARDS (Redis >= 7.0). The shard label is the first slot range.

    With TLS the node's ``tls-port`` is the one clients dial; nodes reported with
    ``health: failed`` are kept (the cluster still lists them).
    """
    if not isinstance(reply, list):
        raise TopologyParseError("CLUSTER SHARDS: expected a list")
    nodes: list[ClusterNode] = []
    for index, raw_shard in enumerate(reply):
        shard = _pairs(raw_shard)
        slots = [int(s) for s in shard.get("slots") or []]
        shard_label = f"{slots[0]}-{slots[1]}" if len(slots) >= 2 else f"noslots-{index}"
        for raw_node in shard.get("nodes") or []:
            node = _pairs(raw_node)
            port = node.get("tls-port") if tls else node.get("port")
            port = port if port is not None else node.get("port") or node.get("tls-port")
            if port is None:
                raise TopologyParseError("CLUSTER SHARDS: node without a port")
            role = Role.PRIMARY if node.get("role") == "master" else Role.REPLICA
            nodes.append(ClusterNode(
                address=_join(_announced_host(node, fallback_host), int(port)),
                node_id=str(node.get("id", "")),
                role=role,
                shard=shard_label,
            ))  # fmt: skip
    _relabel_empty_shards(nodes)
    return tuple(sorted(nodes, key=lambda n: (n.shard, n.role != Role.PRIMARY, n.address)))


def _relabel_empty_shards(nodes: list[ClusterNode]) -> None:
    """Slot-less shards get their primary's id prefix instead of a positional label."""
    labels = {n.shard: f"noslots-{n.node_id[:8]}" for n in nodes
              if n.shard.startswith("noslots-") and n.role == Role.PRIMARY}  # fmt: skip
    for i, node in enumerate(nodes):
        if node.shard in labels:
            nodes[i] = ClusterNode(node.address, node.node_id, node.role, labels[node.shard])


def parse_cluster_slots(reply: Any, *, fallback_host: str) -> tuple[ClusterNode, ...]:
    """CLUSTER SLOTS (older servers): slot-less primaries are invisible here."""
    if not isinstance(reply, list):
        raise TopologyParseError("CLUSTER SLOTS: expected a list")
    by_primary: dict[str, tuple[int, int, list[Any]]] = {}
    for entry in reply:
        if not isinstance(entry, list) or len(entry) < 3:
            raise TopologyParseError("CLUSTER SLOTS: malformed entry")
        start, end, members = int(entry[0]), int(entry[1]), entry[2:]
        key = str(members[0][2]) if len(members[0]) > 2 else str(members[0][:2])
        if key not in by_primary or start < by_primary[key][0]:
            by_primary[key] = (start, end, members)
    nodes: list[ClusterNode] = []
    for start, end, members in by_primary.values():
        for i, member in enumerate(members):
            host = str(member[0]) or fallback_host
            nodes.append(ClusterNode(
                address=_join(host, int(member[1])),
                node_id=str(member[2]) if len(member) > 2 else "",
                role=Role.PRIMARY if i == 0 else Role.REPLICA,
                shard=f"{start}-{end}",
            ))  # fmt: skip
    return tuple(sorted(nodes, key=lambda n: (n.shard, n.role != Role.PRIMARY, n.address)))


def parse_cluster_nodes(text: str, *, fallback_host: str) -> tuple[ClusterNode, ...]:
    """CLUSTER NODES text (the oldest fallback)."""
    rows: list[tuple[str, str, list[str], str, list[str]]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, addr, flags, master = parts[0], parts[1], parts[2].split(","), parts[3]
        if "noaddr" in flags or "handshake" in flags:
            continue
        rows.append((node_id, addr.split("@")[0].split(",")[0], flags, master, parts[8:]))
    if not rows:
        raise TopologyParseError("CLUSTER NODES: no nodes")
    first_range: dict[str, str] = {}
    for node_id, _addr, flags, _master, slots in rows:
        if "master" in flags:
            ranges = [s for s in slots if not s.startswith("[")]
            first = min(ranges, key=lambda r: int(r.split("-")[0])) if ranges else ""
            if first and "-" not in first:
                first = f"{first}-{first}"
            first_range[node_id] = first or f"noslots-{node_id[:8]}"
    nodes = []
    for node_id, addr, flags, master, _slots in rows:
        host, _, port = addr.rpartition(":")
        primary = "master" in flags
        nodes.append(ClusterNode(
            address=_join(host.strip("[]") or fallback_host, int(port)),
            node_id=node_id,
            role=Role.PRIMARY if primary else Role.REPLICA,
            shard=first_range.get(node_id if primary else master, f"noslots-{master[:8]}"),
        ))  # fmt: skip
    return tuple(sorted(nodes, key=lambda n: (n.shard, n.role != Role.PRIMARY, n.address)))
