"""The application's Redis pool limit per node, as go-redis v9 computes it.

From go-redis v9 source (redis/go-redis):

* ``options.go``, ``(*Options).init``: ``if opt.PoolSize == 0 { opt.PoolSize = 10 *
  runtime.GOMAXPROCS(0) }`` -- a standalone client's default.
* ``osscluster.go``: ``PoolSize int // applies per cluster node and not for the whole
  cluster``; ``(*ClusterOptions).init`` defaults it to ``5 * runtime.GOMAXPROCS(0)``
  and turns ``ReadOnly`` on when ``RouteByLatency`` (or ``RouteRandomly``) is set;
  ``newClusterNode`` builds one ``Client`` per node address from
  ``clientOptions()``, which copies ``PoolSize`` -- so each node gets the full pool.

Without ReadOnly, commands only go to the slot's primary; replicas are dialled for
little more than topology reloads, so only primaries carry a pool limit here (a
replica listed with limit 0 would turn the current/max ratio into +Inf).

GOMAXPROCS defaults, since Go 1.25, to the CPUs in the process's affinity mask
lowered to the cgroup CPU limit, quota/period rounded *up* and at least 2
(``runtime/cgroup_linux.go``, ``adjustCgroupGOMAXPROCS``); a GOMAXPROCS environment
variable wins. (uber-go/automaxprocs, used by older builds, rounds down, minimum 1.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from exporter.model import ClusterNode, Role

__all__ = [
    "CLUSTER_POOL_PER_CPU",
    "STANDALONE_POOL_PER_CPU",
    "available_cpus",
    "cgroup_cpu_limit",
    "default_pool_size",
    "pool_max_per_node",
]

CLUSTER_POOL_PER_CPU = 5
STANDALONE_POOL_PER_CPU = 10


def default_pool_size(*, cluster: bool, cpus: int) -> int:
    """go-redis's PoolSize when the application leaves it at 0."""
    return (CLUSTER_POOL_PER_CPU if cluster else STANDALONE_POOL_PER_CPU) * max(cpus, 1)


def pool_max_per_node(
    nodes: Sequence[ClusterNode],
    *,
    cluster: bool,
    pool_size: int | None,
    read_only: bool,
    route_by_latency: bool,
    cpus: int,
) -> dict[str, int]:
    """node address -> the most connections the application may open to it.

    Cluster: the pool size on every node when ``read_only`` or ``route_by_latency``,
    else on primaries only (replicas are absent). Standalone: the pool size on each
    configured address. ``pool_size`` None or 0 means go-redis's default.
    """
    if cpus < 1:
        raise ValueError(f"cpus must be at least 1, got {cpus}")
    if pool_size is not None and pool_size < 0:
        raise ValueError(f"pool_size must not be negative, got {pool_size}")
    size = pool_size or default_pool_size(cluster=cluster, cpus=cpus)
    every_node = not cluster or read_only or route_by_latency
    return {n.address: size for n in nodes if every_node or n.role is Role.PRIMARY}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroups(proc_self_cgroup: Path) -> dict[str, str]:
    """controller ("" for cgroup v2) -> path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    for line in (_read(proc_self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


def _candidates(base: Path, sub: str | None) -> list[Path]:
    """The process's own cgroup directory first (Go reads the leaf), then ``base``
    itself, which is the leaf inside a cgroup namespace (a container)."""
    dirs = []
    if sub and sub != "/":
        dirs.append(base / sub.lstrip("/"))
    dirs.append(base)
    return dirs


def cgroup_cpu_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    *,
    proc_self_cgroup: Path = Path("/proc/self/cgroup"),
) -> float | None:
    """CPUs allowed by the cgroup CPU quota (quota / period), None when unlimited or
    unknown. cgroup v2 ``cpu.max`` first, then v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` under ``cpu`` or ``cpu,cpuacct``."""
    own = _own_cgroups(proc_self_cgroup)
    for directory in _candidates(cgroup_root, own.get("")):
        text = _read(directory / "cpu.max")
        if text is None:
            continue
        fields = text.split()
        if len(fields) != 2 or fields[0] == "max":
            return None
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for directory in _candidates(cgroup_root / mount, own.get("cpu")):
            quota_text = _read(directory / "cpu.cfs_quota_us")
            period_text = _read(directory / "cpu.cfs_period_us")
            if quota_text is None or period_text is None:
                continue
            try:
                quota, period = int(quota_text), int(period_text)
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
    return None


def _affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_cpus(
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    *,
    proc_self_cgroup: Path = Path("/proc/self/cgroup"),
    environ: Mapping[str, str] | None = None,
    affinity: int | None = None,
) -> int:
    """What ``runtime.GOMAXPROCS(0)`` returns for a Go 1.25+ program started here.

    A positive integer GOMAXPROCS in ``environ`` (default ``os.environ``) wins.
    Otherwise: ``affinity`` (default: this process's affinity mask, else
    ``os.cpu_count()``), lowered to ``max(2, ceil(quota / period))`` when a cgroup
    quota is set. Note that a sidecar sees its *own* container's quota, not the
    application container's: set GOMAXPROCS (or REDIS_POOL_SIZE) when they differ.
    """
    env = os.environ if environ is None else environ
    raw = env.get("GOMAXPROCS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    procs = affinity if affinity is not None and affinity > 0 else _affinity_cpus()
    limit = cgroup_cpu_limit(cgroup_root, proc_self_cgroup=proc_self_cgroup)
    if limit is not None:
        procs = min(procs, max(2, math.ceil(limit)))
    return procs
