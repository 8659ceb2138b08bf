"""Frozen result types shared by probes, the scheduler, rendering and reports.

Probes return *per-cycle* results (what happened this time); the scheduler folds
them into a cumulative :class:`Snapshot` (counters, histograms) that is swapped in
whole, so readers never see half a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

__all__ = [
    "DURATION_BUCKETS",
    "ClusterNode",
    "ClusterTopology",
    "CycleResult",
    "Histogram",
    "NodeCheck",
    "NodeInfo",
    "NodeState",
    "OtlpConfigInfo",
    "OtlpProbeResult",
    "OtlpProbeState",
    "Reason",
    "Role",
    "Snapshot",
    "SocketObservation",
    "frozen_map",
]


class Reason(StrEnum):
    """Why a probe attempt failed. A fixed set: label values never carry free text."""

    TIMEOUT = "timeout"
    CONNECTION_RESET = "connection_reset"
    CONNECTION_REFUSED = "connection_refused"
    DNS = "dns"
    TLS = "tls"
    AUTH = "auth"
    LOADING = "loading"
    CLUSTER_DOWN = "cluster_down"
    PROTOCOL = "protocol"
    OTHER = "other"


class Role(StrEnum):
    PRIMARY = "primary"
    REPLICA = "replica"


#: Buckets for round-trip histograms: a PING on an open connection is ~0.1-1 ms,
#: a TLS handshake to another AZ tens of ms, a struggling node seconds.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


K = TypeVar("K")
V = TypeVar("V")


def frozen_map(items: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only view over a private copy of ``items``."""
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative histogram state; ``counts[i]`` counts observations <= ``buckets[i]``."""

    buckets: tuple[float, ...] = DURATION_BUCKETS
    #: empty until the first observation
    counts: tuple[int, ...] = ()
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> Histogram:
        previous = self.counts or (0,) * len(self.buckets)
        counts = tuple(c + 1 if value <= b else c
                       for b, c in zip(self.buckets, previous, strict=True))  # fmt: skip
        return Histogram(self.buckets, counts, self.total + value, self.count + 1)

    def cumulative(self) -> tuple[int, ...]:
        """Counts per bucket (<= bound), zeros before the first observation."""
        return self.counts or (0,) * len(self.buckets)


# --------------------------------------------------------------------------- Redis


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One node as the cluster announces it (or the configured address, standalone)."""

    address: str  # host:port as announced
    node_id: str = ""
    role: Role = Role.PRIMARY
    shard: str = ""


@dataclass(frozen=True, slots=True)
class ClusterTopology:
    cluster: bool
    nodes: tuple[ClusterNode, ...]
    #: from CLUSTER INFO of a reachable node; None in standalone mode or when unknown
    state_ok: bool | None = None
    slots_ok: int | None = None
    discovered_at: float = 0.0
    #: reason the last discovery failed (the previous node list is kept), if it did
    error_reason: Reason | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(n.address for n in self.nodes)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Fields read from INFO (clients, stats, replication) in the same cycle."""

    connected_clients: int | None = None
    maxclients: int | None = None
    rejected_connections: int | None = None
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class NodeCheck:
    """The outcome of one check (up to ATTEMPTS PINGs) against one node."""

    node: str
    ok: bool
    attempts: int
    #: reason of each failed attempt, in order (a recovered check has some too)
    attempt_failures: tuple[Reason, ...] = ()
    #: round trip of the successful PING
    rtt_seconds: float | None = None
    #: short, secret-free description of the last error
    error: str | None = None
    finished_at: float = 0.0
    info: NodeInfo | None = None
    #: the node answered MOVED / CLUSTERDOWN etc.: topology should be refreshed
    wants_topology_refresh: bool = False

    @property
    def reason(self) -> Reason | None:
        """The reason of the last failed attempt when the check failed."""
        if self.ok or not self.attempt_failures:
            return None
        return self.attempt_failures[-1]


@dataclass(frozen=True, slots=True)
class NodeState:
    """Cumulative per-node state, as rendered into metrics."""

    node: ClusterNode
    checks_total: int = 0
    failed_total: Mapping[Reason, int] = field(default_factory=frozen_map)
    attempt_failures_total: Mapping[Reason, int] = field(default_factory=frozen_map)
    up: bool | None = None
    duration: Histogram = field(default_factory=Histogram)
    last_success: float | None = None
    last_check: NodeCheck | None = None
    info: NodeInfo = field(default_factory=NodeInfo)


# --------------------------------------------------------------------------- OTLP


@dataclass(frozen=True, slots=True)
class OtlpProbeResult:
    """One OTLP Export probe against one resolved address and protocol."""

    endpoint: str  # ip:port, IPv6 in brackets
    protocol: str  # "grpc" | "http/protobuf" | "http/json"
    ok: bool
    #: Reason value, or "http_<status>" / "grpc_<code>"; None when ok
    reason: str | None = None
    duration_seconds: float | None = None
    error: str | None = None
    #: partial success reported by the collector (rejected data points, message)
    partial_success: str | None = None
    #: the port this probe was aimed at, and why (grpc_port / http_port / configured)
    port: int = 0


@dataclass(frozen=True, slots=True)
class OtlpProbeState:
    """Cumulative per (endpoint, protocol) state."""

    endpoint: str
    protocol: str
    probes_total: int = 0
    failed_total: Mapping[str, int] = field(default_factory=frozen_map)
    up: bool | None = None
    duration: Histogram = field(default_factory=Histogram)
    last: OtlpProbeResult | None = None


@dataclass(frozen=True, slots=True)
class OtlpConfigInfo:
    """What the application is configured to use for one signal."""

    signal: str  # "metrics"
    endpoint: str  # the URL the application would use
    protocol: str


# --------------------------------------------------------------------------- sockets


@dataclass(frozen=True, slots=True)
class SocketObservation:
    """The pod's socket table, reduced to what the metrics need."""

    #: node -> state -> count (depwatch's own sockets excluded)
    redis_sockets: Mapping[str, Mapping[str, int]] = field(default_factory=frozen_map)
    #: collector endpoint ip:port -> state -> count
    collector_sockets: Mapping[str, Mapping[str, int]] = field(default_factory=frozen_map)
    #: remote ports of live (established / syn_sent) sockets to collector addresses
    collector_live_ports: frozenset[int] = frozenset()
    #: pod_tcp_* counters from /proc/net/snmp
    tcp_counters: Mapping[str, int] = field(default_factory=frozen_map)
    malformed_lines: int = 0
    error: str | None = None
    #: where the socket table came from: "sock_diag" (netlink) or "proc" (the files)
    source: str = "proc"
    #: why a sock_diag dump was tried and not used (the files were read instead)
    sock_diag_error: str | None = None


# --------------------------------------------------------------------------- cycle


@dataclass(frozen=True, slots=True)
class CycleResult:
    """Everything one probe cycle produced, before folding into a snapshot."""

    started_at: float
    finished_at: float
    topology: ClusterTopology | None
    node_checks: tuple[NodeCheck, ...] = ()
    otlp_results: tuple[OtlpProbeResult, ...] = ()
    otlp_config: tuple[OtlpConfigInfo, ...] = ()
    #: (signal, reason) -> mismatch flag
    otlp_mismatch: Mapping[tuple[str, str], bool] = field(default_factory=frozen_map)
    sockets: SocketObservation | None = None
    #: node -> the application's pool limit for that node
    pool_max_conns: Mapping[str, int] = field(default_factory=frozen_map)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The newest cumulative view; swapped in whole after each cycle."""

    cycles: int = 0
    last_cycle_at: float | None = None
    cycle_duration: Histogram = field(
        default_factory=lambda: Histogram(buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
    )
    redis_enabled: bool = False
    topology: ClusterTopology | None = None
    nodes: Mapping[str, NodeState] = field(default_factory=frozen_map)
    otlp_enabled: bool = False
    otlp: Mapping[tuple[str, str], OtlpProbeState] = field(default_factory=frozen_map)
    otlp_config: tuple[OtlpConfigInfo, ...] = ()
    otlp_mismatch: Mapping[tuple[str, str], bool] = field(default_factory=frozen_map)
    sockets: SocketObservation | None = None
    pool_max_conns: Mapping[str, int] = field(default_factory=frozen_map)
