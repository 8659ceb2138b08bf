"""Label values allowed by SPEC §4: fixed sets, or addresses of known targets.

``check_labels(samples, nodes=...)`` fails on any label value outside them, so a
free-text error message (or anything unbounded) can never become a label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from support.depwatch_harness import Samples

from exporter.model import Reason

__all__ = ["REASONS", "check_labels", "depwatch_series"]

REASONS = frozenset(r.value for r in Reason)
MISMATCH_REASONS = frozenset({"port_protocol", "configured_unreachable", "observed_port"})
SOCKET_STATES = frozenset({"established", "time_wait", "close_wait", "syn_sent", "fin_wait",
                           "other"})  # fmt: skip
PROTOCOLS = frozenset({"grpc", "http/protobuf", "http/json"})
_OTLP_REASON = re.compile(r"(http_[1-5][0-9][0-9]|grpc_[a-z_]{2,20})")
_IP_PORT = re.compile(r"(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:]+\]):\d{1,5}")
_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]{1,80}(/v1/metrics)?")
_PREFIXES = ("redis_", "otlp_", "pod_tcp_", "depwatch_")


def depwatch_series(samples: Samples) -> Samples:
    """Only depwatch's own families (not process_* / python_*)."""
    return {k: v for k, v in samples.items() if k[0].startswith(_PREFIXES)}


def _check(name: str, key: str, val: str, nodes: frozenset[str]) -> None:
    bad = f"{name}{{{key}={val!r}}}"
    if key == "node":
        assert val in nodes, bad
    elif key == "reason" and name.startswith("redis_"):
        assert val in REASONS, bad
    elif key == "reason" and name.startswith("otlp_exporter_config_mismatch"):
        assert val in MISMATCH_REASONS, bad
    elif key == "reason":
        assert val in REASONS or _OTLP_REASON.fullmatch(val), bad
    elif key == "state":
        assert val in SOCKET_STATES, bad
    elif key == "role":
        assert val in {"primary", "replica"}, bad
    elif key == "protocol":
        assert val in PROTOCOLS, bad
    elif key == "signal":
        assert val == "metrics", bad
    elif key == "endpoint":
        assert _IP_PORT.fullmatch(val) or _URL.fullmatch(val), bad
    elif key == "node_id":
        assert re.fullmatch(r"[0-9a-f]{40}|", val), bad
    elif key == "le":
        assert val == "+Inf" or float(val) > 0, bad
    elif key in {"version", "python_version", "shard"}:
        assert len(val) < 64 and "\n" not in val, bad
    else:
        raise AssertionError(f"unexpected label {bad}")


def check_labels(samples: Samples, *, nodes: Iterable[str] = ()) -> None:
    known = frozenset(nodes)
    for (name, labels), _value in depwatch_series(samples).items():
        for key, val in labels:
            _check(name, key, val, known)
