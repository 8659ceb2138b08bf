"""The status document (/status, ``check --output json``) and its text view (pure)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from exporter import __version__
from exporter.model import NodeState, Snapshot

__all__ = ["problems", "render_json", "render_text", "status_document"]

#: extra sections (OTLP advice, connection budget) added by the caller: name -> builder
SectionBuilder = Callable[[Snapshot], dict[str, Any]]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _node(state: NodeState, snapshot: Snapshot) -> dict[str, Any]:
    check = state.last_check
    observed = snapshot.sockets.redis_sockets.get(state.node.address) if snapshot.sockets else None
    return {
        "node": state.node.address,
        "node_id": state.node.node_id or None,
        "role": state.node.role.value,
        "shard": state.node.shard or None,
        "up": state.up,
        "reason": str(check.reason) if check and check.reason else None,
        "attempts": check.attempts if check else None,
        "attempt_failures": [str(r) for r in check.attempt_failures] if check else [],
        "rtt_ms": _ms(check.rtt_seconds if check else None),
        "error": check.error if check else None,
        "last_success": state.last_success,
        "connected_clients": state.info.connected_clients,
        "maxclients": state.info.maxclients,
        "rejected_connections": state.info.rejected_connections,
        "pool": {
            "current": observed.get("established", 0) if observed is not None else None,
            "max": snapshot.pool_max_conns.get(state.node.address),
            "sockets": dict(observed) if observed is not None else None,
        },
    }


def _otlp(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "enabled": snapshot.otlp_enabled,
        "config": [{"signal": c.signal, "endpoint": c.endpoint, "protocol": c.protocol}
                   for c in snapshot.otlp_config],
        "probes": [
            {
                "endpoint": st.endpoint,
                "protocol": st.protocol,
                "up": st.up,
                "reason": st.last.reason if st.last else None,
                "duration_ms": _ms(st.last.duration_seconds if st.last else None),
                "error": st.last.error if st.last else None,
                "partial_success": st.last.partial_success if st.last else None,
            }
            for st in snapshot.otlp.values()
        ],
        "mismatch": {f"{signal}/{reason}": flag
                     for (signal, reason), flag in snapshot.otlp_mismatch.items()},
    }


def problems(snapshot: Snapshot) -> list[str]:
    """What is wrong, one line each; empty means exit 0 for ``check``."""
    found: list[str] = []
    topo = snapshot.topology
    if topo is not None and topo.cluster:
        if topo.error_reason is not None:
            found.append(f"cluster topology could not be read ({topo.error_reason})")
        if topo.state_ok is False:
            found.append("cluster reports cluster_state other than ok")
    for state in snapshot.nodes.values():
        check = state.last_check
        if state.up is False and check is not None:
            found.append(f"redis node {state.node.address} failed its health check "
                         f"({check.reason}) after {check.attempts} attempt(s)")  # fmt: skip
    for st in snapshot.otlp.values():
        if st.up is False and st.last is not None:
            found.append(f"OTLP {st.protocol} probe of {st.endpoint} failed ({st.last.reason})")
    for (signal, reason), flag in sorted(snapshot.otlp_mismatch.items()):
        if flag:
            found.append(f"OTLP {signal} configuration mismatch: {reason}")
    return found


def status_document(snapshot: Snapshot, *, sections: Sequence[tuple[str, SectionBuilder]] = (),
                    extra_problems: Sequence[str] = ()) -> dict[str, Any]:
    topo = snapshot.topology
    found = [*problems(snapshot), *extra_problems]
    document: dict[str, Any] = {
        "version": __version__,
        "ok": not found,
        "problems": found,
        "cycle": {"count": snapshot.cycles, "last_cycle_at": snapshot.last_cycle_at},
        "redis": {
            "enabled": snapshot.redis_enabled,
            "mode": None if topo is None else ("cluster" if topo.cluster else "standalone"),
            "cluster_state_ok": topo.state_ok if topo and topo.cluster else None,
            "cluster_slots_ok": topo.slots_ok if topo and topo.cluster else None,
            "topology_error": str(topo.error_reason) if topo and topo.error_reason else None,
            "nodes": [_node(st, snapshot) for st in snapshot.nodes.values()],
        },
        "otlp": _otlp(snapshot),
    }
    for name, build in sections:
        document[name] = build(snapshot)
    return document


def render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False)


def _yn(value: bool | None) -> str:
    return {True: "up", False: "DOWN", None: "unknown"}[value]


def render_text(document: dict[str, Any]) -> str:
    """A human report: Redis, OTLP, extra sections' ``lines``, then problems."""
    lines = [f"depwatch {document['version']} check"]
    redis = document["redis"]
    if not redis["enabled"]:
        lines.append("Redis: not configured (REDIS_ADDRESS unset)")
    else:
        lines.append(f"Redis ({redis['mode']}):")
        if redis["mode"] == "cluster":
            state = {True: "ok", False: "FAIL", None: "unknown"}[redis["cluster_state_ok"]]
            lines.append(f"  cluster_state {state}, slots ok {redis['cluster_slots_ok']}")
        for n in redis["nodes"]:
            detail = (f"{n['rtt_ms']} ms" if n["up"] else f"reason={n['reason']} ({n['error']})")
            role = f" {n['role']} shard {n['shard']}" if redis["mode"] == "cluster" else ""
            retried = (f", recovered after {','.join(n['attempt_failures'])}"
                       if n["up"] and n["attempt_failures"] else "")  # fmt: skip
            lines.append(f"  {n['node']}{role}: {_yn(n['up'])} {detail}{retried}")
    otlp = document["otlp"]
    if not otlp["enabled"]:
        lines.append("OTLP: not configured (OTEL_EXPORTER_OTLP_ENDPOINT unset)")
    else:
        lines.append("OTLP:")
        for c in otlp["config"]:
            lines.append(f"  application configured: {c['signal']} {c['protocol']} {c['endpoint']}")
        for p in otlp["probes"]:
            what = f"{p['duration_ms']} ms" if p["up"] else f"reason={p['reason']}"
            lines.append(f"  {p['protocol']:<14} {p['endpoint']}: {_yn(p['up'])} {what}")
    for key, section in document.items():
        if isinstance(section, dict) and "lines" in section:
            lines.append(section.get("title", key) + ":")
            lines.extend(f"  {line}" for line in section["lines"])
    if document["problems"]:
        lines.append("Problems:")
        lines.extend(f"  - {p}" for p in document["problems"])
    else:
        lines.append("No problems found.")
    return "\n".join(lines) + "\n"
