"""The soak's CI variant: 2 minutes, a fault toggled every 10 s (bench/soak.py).

depwatch runs as a subprocess against real redis-server nodes, proxies and OTLP
receivers while faults come and go; RSS, fds, threads and asyncio tasks are sampled
every second. The verdict is the soak's own (see bench/soak.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def _load_soak():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("depwatch_bench_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_soak_short() -> None:
    soak = _load_soak()
    lines: list[str] = []
    report = soak.run_soak(2.0, fault_every=10.0, sample_every=1.0, out=lines.append)
    print("\n".join(lines))
    assert report.ok, report.summary()
    assert len(report.samples) >= 100
    assert report.figures["rss_growth_mib"] < 8.0
    assert all(s.healthz == 200 for s in report.samples)
    # every fault was applied at least once
    assert {s.phase for s in report.samples} >= {"pause node A", "RST on node B",
                                                 "black-hole node B", "kill node A",
                                                 "2 s latency on B", "black-hole OTLP/HTTP"}
