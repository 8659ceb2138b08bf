"""The application's pool limit per node, and the CPUs go-redis would see."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.model import ClusterNode, Role
from exporter.pool_limits import (
    available_cpus,
    cgroup_cpu_limit,
    default_pool_size,
    pool_max_per_node,
)

PRIMARIES = [ClusterNode(f"p{i}:6379", role=Role.PRIMARY) for i in range(3)]
REPLICAS = [ClusterNode(f"r{i}:6379", role=Role.REPLICA) for i in range(3)]
CLUSTER = PRIMARIES + REPLICAS
ALL = {n.address for n in CLUSTER}
ONLY_PRIMARIES = {n.address for n in PRIMARIES}


@pytest.mark.parametrize(
    ("cluster", "pool_size", "read_only", "by_latency", "cpus", "nodes", "size"),
    [
        # the incident: cluster, pool 1000, READ_ONLY and ROUTE_BY_LATENCY -> every node
        (True, 1000, True, True, 2, ALL, 1000),
        (True, 1000, True, False, 2, ALL, 1000),
        (True, 1000, False, True, 2, ALL, 1000),
        (True, 1000, False, False, 2, ONLY_PRIMARIES, 1000),
        # unset: go-redis defaults, 5 x CPUs per node for cluster clients
        (True, None, False, False, 4, ONLY_PRIMARIES, 20),
        (True, 0, True, False, 3, ALL, 15),
        # standalone: 10 x CPUs, role does not matter
        (False, None, False, False, 4, ALL, 40),
        (False, 50, False, False, 4, ALL, 50),
        (False, None, True, True, 1, ALL, 10),
    ],
)
def test_pool_max_per_node(
    cluster: bool,
    pool_size: int | None,
    read_only: bool,
    by_latency: bool,
    cpus: int,
    nodes: set[str],
    size: int,
) -> None:
    got = pool_max_per_node(
        CLUSTER,
        cluster=cluster,
        pool_size=pool_size,
        read_only=read_only,
        route_by_latency=by_latency,
        cpus=cpus,
    )
    assert got == dict.fromkeys(sorted(nodes), size)


def test_standalone_single_address() -> None:
    node = ClusterNode("redis:6379")
    assert pool_max_per_node(
        [node], cluster=False, pool_size=None, read_only=False, route_by_latency=False, cpus=2
    ) == {"redis:6379": 20}


@pytest.mark.parametrize(("pool_size", "cpus"), [(-1, 2), (10, 0)])
def test_invalid_inputs(pool_size: int, cpus: int) -> None:
    with pytest.raises(ValueError, match="must"):
        pool_max_per_node(
            CLUSTER, cluster=True, pool_size=pool_size, read_only=False,
            route_by_latency=False, cpus=cpus,
        )  # fmt: skip


def test_default_pool_size() -> None:
    assert default_pool_size(cluster=True, cpus=8) == 40
    assert default_pool_size(cluster=False, cpus=8) == 80


# ------------------------------------------------------------------------- cgroups


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "self_cgroup", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),
        ({"cpu.max": "200000 100000\n"}, None, 2.0),  # no /proc/self/cgroup: the root
        # not in a cgroup namespace: the process's own leaf is read first
        (
            {"cpu.max": "max 100000", "kubepods/pod1/c1/cpu.max": "50000 100000"},
            "0::/kubepods/pod1/c1\n",
            0.5,
        ),
        ({"cpu/cpu.cfs_quota_us": "250000\n", "cpu/cpu.cfs_period_us": "100000\n"}, None, 2.5),
        (
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            None,
            None,
        ),
        (
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            },
            "4:cpu,cpuacct:/docker/abc\n0::/\n",
            3.0,
        ),
        ({"cpu.max": "garbage"}, "0::/\n", None),
        ({"cpu.max": "abc 100000"}, "0::/\n", None),
        ({"cpu/cpu.cfs_quota_us": "x", "cpu/cpu.cfs_period_us": "100000"}, None, None),
        ({}, None, None),
    ],
)
def test_cgroup_cpu_limit(
    tmp_path: Path, files: dict[str, str], self_cgroup: str | None, limit: float | None
) -> None:
    root = write(tmp_path / "cgroup", files)
    (tmp_path / "cgroup").mkdir(exist_ok=True)
    self_file = tmp_path / "self_cgroup"
    if self_cgroup is not None:
        self_file.write_text(self_cgroup)
    assert cgroup_cpu_limit(root, proc_self_cgroup=self_file) == limit


@pytest.mark.parametrize(
    ("cpu_max", "affinity", "environ", "cpus"),
    [
        ("150000 100000", 8, {}, 2),  # 1.5 rounds up to 2
        ("50000 100000", 8, {}, 2),  # below 2 -> 2 (Go's floor)
        ("50000 100000", 1, {}, 1),  # but never above the affinity mask
        ("250000 100000", 8, {}, 3),
        ("400000 100000", 8, {}, 4),
        ("max 100000", 8, {}, 8),
        ("1600000 100000", 8, {}, 8),  # quota above the machine
        ("150000 100000", 8, {"GOMAXPROCS": "6"}, 6),  # the application's GOMAXPROCS wins
        ("150000 100000", 8, {"GOMAXPROCS": "zero"}, 2),  # invalid: ignored
        ("150000 100000", 8, {"GOMAXPROCS": "0"}, 2),
    ],
)
def test_available_cpus_like_go(
    tmp_path: Path, cpu_max: str, affinity: int, environ: dict[str, str], cpus: int
) -> None:
    root = write(tmp_path / "cgroup", {"cpu.max": cpu_max})
    got = available_cpus(
        root, proc_self_cgroup=tmp_path / "none", environ=environ, affinity=affinity
    )
    assert got == cpus


def test_available_cpus_on_this_machine() -> None:
    assert available_cpus(environ={}) >= 1
