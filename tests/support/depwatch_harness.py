"""Run depwatch in-process (scheduler + aiohttp app on 127.0.0.1:0) and read /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.config import Settings, load_settings
from exporter.logs import get_logger
from exporter.wiring import Runtime, build_runtime

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@dataclass
class Harness:
    settings: Settings
    runtime: Runtime
    client: TestClient

    async def metrics(self) -> Samples:
        resp = await self.client.get(self.settings.metrics_path)
        assert resp.status == 200
        return parse_metrics(await resp.text())

    async def metrics_text(self) -> str:
        resp = await self.client.get(self.settings.metrics_path)
        return await resp.text()

    async def status(self) -> dict[str, Any]:
        resp = await self.client.get("/status")
        return await resp.json()

    async def wait_metrics(self, predicate: Callable[[Samples], bool], *, within: float,
                           interval: float = 0.1) -> Samples:
        """Poll /metrics until ``predicate`` holds; bounded by ``within`` seconds."""
        deadline = time.monotonic() + within
        last: Samples = {}
        while time.monotonic() < deadline:
            last = await self.metrics()
            if predicate(last):
                return last
            await asyncio.sleep(interval)
        raise AssertionError(f"condition not met within {within}s; last samples: "
                             f"{sorted((k[0], sorted(k[1]), v) for k, v in last.items())[:80]}")


def fast_env(**overrides: str) -> dict[str, str]:
    env = {
        "DEPWATCH_PROBE_INTERVAL": "300ms",
        "DEPWATCH_HEALTH_CHECK_TIMEOUT": "500ms",
        "DEPWATCH_HEALTH_CHECK_ATTEMPTS": "3",
        "DEPWATCH_HEALTH_CHECK_BACKOFF": "100ms",
        "DEPWATCH_TOPOLOGY_REFRESH_INTERVAL": "5s",
    }
    env.update(overrides)
    return env


@asynccontextmanager
async def running_depwatch(env: Mapping[str, str]) -> AsyncIterator[Harness]:
    """depwatch with its probe loop running, served on an ephemeral 127.0.0.1 port."""
    settings = load_settings(env)
    runtime = build_runtime(settings, log=get_logger())
    app = create_app(settings, scheduler=runtime.scheduler, sections=runtime.sections,
                     extra_problems=runtime.extra_problems)  # fmt: skip
    server = TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    try:
        yield Harness(settings, runtime, client)
    finally:
        await client.close()
        await runtime.close()
