"""The metric catalogue and a pure ``render(snapshot)``, served by a custom collector.

Values come from the last completed probe cycle, not from the scrape: depwatch
probes on a timer so that Redis load does not grow with scrape frequency and
/metrics answers while targets hang (see depwatch_last_cycle_timestamp_seconds).
``collect()`` never does I/O.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.model import Histogram, NodeState, Reason, Snapshot

__all__ = ["CATALOGUE", "SOCKET_STATES", "MetricSpec", "SnapshotCollector", "build_registry",
           "render"]  # fmt: skip

_CYCLE = " (from the last probe cycle)"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as exposed (counters with _total)
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()


_S = MetricSpec
CATALOGUE: tuple[MetricSpec, ...] = (
    _S("redis_health_checks_total", "counter", "Redis health checks run" + _CYCLE, ("node",)),
    _S("redis_health_check_failed_total", "counter",
       "Checks that failed after every attempt, by the last attempt's reason", ("node", "reason")),
    _S("redis_health_check_attempt_failures_total", "counter",
       "Failed attempts, including ones a retry recovered", ("node", "reason")),
    _S("redis_health_check_up", "gauge", "1 if the last check succeeded" + _CYCLE, ("node",)),
    _S("redis_health_check_duration_seconds", "histogram",
       "Round trip of successful PINGs on an open connection", ("node",)),
    _S("redis_health_check_last_success_timestamp_seconds", "gauge",
       "Unix time of the last successful check", ("node",)),
    _S("redis_cluster_node_info", "gauge", "Cluster topology as announced (always 1)",
       ("node", "node_id", "role", "shard")),
    _S("redis_cluster_state_ok", "gauge", "1 if the cluster reports cluster_state:ok" + _CYCLE),
    _S("redis_cluster_slots_ok", "gauge", "Slots served (cluster_slots_ok)" + _CYCLE),
    _S("redis_node_connected_clients", "gauge", "Server-side connected_clients" + _CYCLE,
       ("node",)),
    _S("redis_node_maxclients", "gauge", "Server maxclients, from INFO" + _CYCLE, ("node",)),
    _S("redis_node_rejected_connections_total", "counter",
       "Server rejected_connections" + _CYCLE, ("node",)),
    _S("redis_pool_current_conns", "gauge",
       "ESTABLISHED TCP connections from this pod to the node, depwatch's own excluded"
       + _CYCLE, ("node",)),
    _S("redis_pool_sockets", "gauge", "This pod's sockets to the node by TCP state" + _CYCLE,
       ("node", "state")),
    _S("redis_pool_max_conns", "gauge",
       "The application's pool limit for the node (REDIS_POOL_SIZE; per node in cluster mode)",
       ("node",)),
    _S("otlp_export_probes_total", "counter", "OTLP probes sent: one empty Export request each",
       ("endpoint", "protocol")),
    _S("otlp_export_probe_failed_total", "counter", "OTLP probes that failed",
       ("endpoint", "protocol", "reason")),
    _S("otlp_export_probe_up", "gauge", "1 if the last OTLP probe succeeded" + _CYCLE,
       ("endpoint", "protocol")),
    _S("otlp_export_probe_duration_seconds", "histogram", "Duration of successful OTLP probes",
       ("endpoint", "protocol")),
    _S("otlp_exporter_config_info", "gauge",
       "What the application is configured to use (always 1)", ("signal", "endpoint", "protocol")),
    _S("otlp_exporter_config_mismatch", "gauge",
       "1 while the application's OTLP configuration disagrees with what works" + _CYCLE,
       ("signal", "reason")),
    _S("otlp_collector_connections", "gauge",
       "TCP sockets from this pod to the collector, by remote endpoint and state" + _CYCLE,
       ("endpoint", "state")),
    _S("pod_tcp_estab_resets_total", "counter", "The pod's TCP EstabResets (/proc/net/snmp)"),
    _S("pod_tcp_attempt_fails_total", "counter", "The pod's TCP AttemptFails (/proc/net/snmp)"),
    _S("pod_tcp_out_resets_total", "counter", "The pod's TCP OutRsts (/proc/net/snmp)"),
    _S("pod_tcp_retrans_segs_total", "counter", "The pod's TCP RetransSegs (/proc/net/snmp)"),
    _S("depwatch_build_info", "gauge", "depwatch build (always 1)", ("version", "python_version")),
    _S("depwatch_probe_cycle_duration_seconds", "histogram", "Duration of one full probe cycle"),
    _S("depwatch_last_cycle_timestamp_seconds", "gauge", "Unix time the last probe cycle ended"),
)  # fmt: skip

SOCKET_STATES = ("established", "time_wait", "close_wait", "syn_sent", "fin_wait", "other")
MISMATCH_REASONS = ("port_protocol", "configured_unreachable", "observed_port")
_OTLP_BASE_REASONS = ("timeout", "connection_reset", "connection_refused", "dns", "tls",
                      "protocol", "other")  # fmt: skip
_TCP_COUNTERS = {
    "pod_tcp_estab_resets_total": "estab_resets",
    "pod_tcp_attempt_fails_total": "attempt_fails",
    "pod_tcp_out_resets_total": "out_resets",
    "pod_tcp_retrans_segs_total": "retrans_segs",
}
_SPECS = {s.name: s for s in CATALOGUE}


def _family(name: str) -> Metric:
    spec = _SPECS[name]
    labels = list(spec.labels)
    if spec.kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=labels)
    if spec.kind == "histogram":
        return HistogramMetricFamily(name, spec.help, labels=labels)
    return GaugeMetricFamily(name, spec.help, labels=labels)


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    bounds = [(repr(float(b)), float(c)) for b, c in zip(h.buckets, h.cumulative(), strict=True)]
    return [*bounds, ("+Inf", float(h.count))]


def _render_nodes(nodes: Iterable[NodeState], snapshot: Snapshot) -> Iterator[Metric]:
    fam = {s.name: _family(s.name) for s in CATALOGUE if s.name.startswith(("redis_health",
           "redis_cluster_node", "redis_node"))}  # fmt: skip
    for st in nodes:
        n = st.node.address
        fam["redis_health_checks_total"].add_metric([n], st.checks_total)
        for reason in Reason:
            fam["redis_health_check_failed_total"].add_metric(
                [n, reason.value], st.failed_total.get(reason, 0))
            fam["redis_health_check_attempt_failures_total"].add_metric(
                [n, reason.value], st.attempt_failures_total.get(reason, 0))
        fam["redis_health_check_up"].add_metric([n], 1.0 if st.up else 0.0)
        h = st.duration
        fam["redis_health_check_duration_seconds"].add_metric([n], _buckets(h), h.total)
        if st.last_success is not None:
            fam["redis_health_check_last_success_timestamp_seconds"].add_metric(
                [n], st.last_success)
        if snapshot.topology is not None and snapshot.topology.cluster:
            fam["redis_cluster_node_info"].add_metric(
                [n, st.node.node_id, st.node.role.value, st.node.shard], 1.0)
        info = st.info
        if info.connected_clients is not None:
            fam["redis_node_connected_clients"].add_metric([n], info.connected_clients)
        if info.maxclients is not None:
            fam["redis_node_maxclients"].add_metric([n], info.maxclients)
        if info.rejected_connections is not None:
            fam["redis_node_rejected_connections_total"].add_metric([n],
                                                                    info.rejected_connections)
    yield from fam.values()


def _render_cluster(snapshot: Snapshot) -> Iterator[Metric]:
    topo = snapshot.topology
    if topo is None or not topo.cluster:
        return
    state = _family("redis_cluster_state_ok")
    state.add_metric([], 1.0 if topo.state_ok else 0.0)
    yield state
    slots = _family("redis_cluster_slots_ok")
    slots.add_metric([], float(topo.slots_ok or 0))
    yield slots


def _render_pool(snapshot: Snapshot) -> Iterator[Metric]:
    current = _family("redis_pool_current_conns")
    sockets = _family("redis_pool_sockets")
    maximum = _family("redis_pool_max_conns")
    observed = snapshot.sockets.redis_sockets if snapshot.sockets else {}
    for node in snapshot.nodes:
        if node in observed:
            states = observed[node]
            current.add_metric([node], states.get("established", 0))
            for state in SOCKET_STATES:
                sockets.add_metric([node, state], states.get(state, 0))
        if node in snapshot.pool_max_conns:
            maximum.add_metric([node], snapshot.pool_max_conns[node])
    yield from (current, sockets, maximum)


def _render_otlp(snapshot: Snapshot) -> Iterator[Metric]:
    probes = _family("otlp_export_probes_total")
    failed = _family("otlp_export_probe_failed_total")
    up = _family("otlp_export_probe_up")
    duration = _family("otlp_export_probe_duration_seconds")
    for (endpoint, protocol), st in snapshot.otlp.items():
        probes.add_metric([endpoint, protocol], st.probes_total)
        for reason in sorted({*_OTLP_BASE_REASONS, *st.failed_total}):
            failed.add_metric([endpoint, protocol, reason], st.failed_total.get(reason, 0))
        up.add_metric([endpoint, protocol], 1.0 if st.up else 0.0)
        duration.add_metric([endpoint, protocol], _buckets(st.duration), st.duration.total)
    info = _family("otlp_exporter_config_info")
    mismatch = _family("otlp_exporter_config_mismatch")
    for cfg in snapshot.otlp_config:
        info.add_metric([cfg.signal, cfg.endpoint, cfg.protocol], 1.0)
        for reason in MISMATCH_REASONS:
            flag = snapshot.otlp_mismatch.get((cfg.signal, reason), False)
            mismatch.add_metric([cfg.signal, reason], 1.0 if flag else 0.0)
    conns = _family("otlp_collector_connections")
    if snapshot.sockets is not None:
        for endpoint, states in sorted(snapshot.sockets.collector_sockets.items()):
            for state in SOCKET_STATES:
                conns.add_metric([endpoint, state], states.get(state, 0))
    yield from (probes, failed, up, duration, info, mismatch, conns)


def _render_pod(snapshot: Snapshot) -> Iterator[Metric]:
    counters = snapshot.sockets.tcp_counters if snapshot.sockets else {}
    for name, key in _TCP_COUNTERS.items():
        fam = _family(name)
        if key in counters:
            fam.add_metric([], counters[key])
        yield fam


def _render_self(snapshot: Snapshot) -> Iterator[Metric]:
    build = _family("depwatch_build_info")
    build.add_metric([__version__, platform.python_version()], 1.0)
    yield build
    cycle = _family("depwatch_probe_cycle_duration_seconds")
    cycle.add_metric([], _buckets(snapshot.cycle_duration), snapshot.cycle_duration.total)
    yield cycle
    last = _family("depwatch_last_cycle_timestamp_seconds")
    if snapshot.last_cycle_at is not None:
        last.add_metric([], snapshot.last_cycle_at)
    yield last


def render(snapshot: Snapshot) -> Iterator[Metric]:
    """Every catalogue family, in catalogue order, from ``snapshot`` alone."""
    families: dict[str, Metric] = {}
    for part in (_render_nodes(snapshot.nodes.values(), snapshot), _render_cluster(snapshot),
                 _render_pool(snapshot), _render_otlp(snapshot), _render_pod(snapshot),
                 _render_self(snapshot)):  # fmt: skip
        for fam in part:
            families[fam.name] = fam
    for spec in CATALOGUE:
        key = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
        if key in families:
            yield families[key]


class SnapshotCollector:
    """A prometheus_client collector over whatever snapshot ``get`` returns now."""

    def __init__(self, get: Callable[[], Snapshot]) -> None:
        self._get = get

    def collect(self) -> Iterator[Metric]:
        return render(self._get())

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: families vary with the snapshot


def build_registry(get: Callable[[], Snapshot]) -> CollectorRegistry:
    """A private registry: depwatch's metrics plus process_* and python_* collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(get))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
