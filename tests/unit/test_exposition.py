"""/metrics encoding: depwatch's negotiation writes exactly what prometheus_client's would."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from test_catalogue import full_snapshot

from exporter.exposition import negotiate
from exporter.metrics import build_registry

LEGACY_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LEGACY_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

ACCEPTS = [
    "",
    "text/plain;version=0.0.4",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0",
    # what Prometheus 2.x and 3.x send
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "text/plain;version=1.0.0;escaping=underscores",
]


class Awkward:
    """Label values that need escaping: quotes, backslashes, newlines, non-ASCII."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("depwatch_test_awkward", 'help with "quotes" \\ and\nnewline',
                                   labels=["node"])  # fmt: skip
        for value in ('a"b', "c\\d", "e\nf", "ünï", "", "10.0.0.1:6379"):
            family.add_metric([value], 1.5)
        yield family


class Frozen:
    """One collection of depwatch's registry, replayed (process_* values move)."""

    def __init__(self) -> None:
        snapshot = full_snapshot()
        self.families = list(build_registry(lambda: snapshot).collect())
        self.families += Awkward().collect()

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Frozen())
    return reg


def test_every_exposed_name_is_in_the_legacy_character_set() -> None:
    """The premise of the fast OpenMetrics path in exporter.exposition."""
    for family in build_registry(full_snapshot).collect():
        for sample in family.samples:
            assert LEGACY_METRIC_NAME.match(sample.name), sample.name
            for label in sample.labels:
                assert LEGACY_LABEL_NAME.match(label), (sample.name, label)


@pytest.mark.parametrize("accept", ACCEPTS)
def test_negotiate_matches_prometheus_client_byte_for_byte(accept: str) -> None:
    reg = registry()
    theirs, their_type = choose_encoder(accept)
    ours, our_type = negotiate(accept)
    assert our_type == their_type
    assert ours(reg) == theirs(reg)


class Changing:
    """A registry whose families change between renders as depwatch's do."""

    def __init__(self) -> None:
        self.step = 0

    def collect(self) -> Iterator[Metric]:
        steady = GaugeMetricFamily("depwatch_test_steady", "never changes", labels=["node"])
        steady.add_metric(["a"], 1.0)
        yield steady
        moving = GaugeMetricFamily("depwatch_test_moving", "changes every step", labels=["node"])
        moving.add_metric(["a"], float(self.step))
        yield moving
        if self.step % 2:  # comes and goes
            flapping = GaugeMetricFamily("depwatch_test_flapping", "odd steps only")
            flapping.add_metric([], 7.0)
            yield flapping
        nan = GaugeMetricFamily("depwatch_test_nan", "NaN never equals itself")
        nan.add_metric([], float("nan"))
        yield nan
        yield from Awkward().collect()


@pytest.mark.parametrize("accept", ACCEPTS)
def test_family_cache_writes_what_a_full_render_writes(accept: str) -> None:
    from exporter.exposition import FamilyCache

    theirs, content_type = choose_encoder(accept)
    ours, _ = negotiate(accept)
    cache = FamilyCache(ours, content_type.startswith("application/openmetrics-text"))
    source = Changing()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(source)
    for step in range(5):
        source.step = step
        assert cache.render(reg) == theirs(reg), f"step {step}"


def test_family_cache_reuses_unchanged_families() -> None:
    from exporter.exposition import FamilyCache

    rendered: list[str] = []

    def encoder(registry: CollectorRegistry) -> bytes:
        names = [f.name for f in registry.collect()]
        rendered.extend(names)
        return "".join(f"{n}\n" for n in names).encode()

    source = Changing()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(source)
    cache = FamilyCache(encoder, openmetrics=False)
    cache.render(reg)
    rendered.clear()
    source.step = 2
    cache.render(reg)
    assert rendered == ["depwatch_test_moving", "depwatch_test_nan"]


def test_name_filter_leaves_shared_families_alone() -> None:
    from exporter.exposition import _Filtered

    family = GaugeMetricFamily("depwatch_test_shared", "one object, handed out twice",
                               labels=["node"])  # fmt: skip
    family.add_metric(["a"], 1.0)

    class Constant:
        def collect(self) -> Iterator[Metric]:
            yield family

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Constant())
    assert [f.name for f in _Filtered(reg, frozenset({"depwatch_test_shared"})).collect()] == [
        "depwatch_test_shared"]  # fmt: skip
    assert list(_Filtered(reg, frozenset({"other"})).collect()) == []
    assert len(family.samples) == 1
