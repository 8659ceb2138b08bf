"""/metrics answers well within Prometheus's scrape timeout while every target hangs.

Tier 3: a real redis-server behind a blackholed proxy (connections accepted, nothing
forwarded or answered) and an OTLP collector that accepts and never answers on both
ports; per-attempt timeouts twice the scrape timeout.
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import time
from collections.abc import Awaitable, Callable

import pytest
from support.depwatch_harness import fast_env, running_depwatch, value
from support.otlp_receivers import Receivers
from support.redis_servers import RedisServer, ResetProxy, wait_for_async

from exporter import __version__

pytestmark = pytest.mark.asyncio

SCRAPE_TIMEOUT = 0.5
HEADERS = {"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT),
           "Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"}


async def test_metrics_within_scrape_timeout_while_every_target_hangs(
        redis_standalone: RedisServer,
        reset_proxy_factory: Callable[[str, int], Awaitable[ResetProxy]],
        receivers: Receivers) -> None:
    proxy = await reset_proxy_factory(redis_standalone.host, redis_standalone.port)
    proxy.blackhole(True)
    grpc_port, http_port = (await receivers.silent()).port, (await receivers.silent()).port
    env = fast_env(REDIS_ADDRESS=proxy.address, DEPWATCH_HEALTH_CHECK_TIMEOUT="1s",
                   DEPWATCH_HEALTH_CHECK_ATTEMPTS="2", DEPWATCH_HEALTH_CHECK_BACKOFF="200ms",
                   DEPWATCH_PROBE_INTERVAL="500ms",
                   OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
                   OTEL_EXPORTER_OTLP_TIMEOUT="10000",
                   DEPWATCH_OTLP_GRPC_PORT=str(grpc_port),
                   DEPWATCH_OTLP_HTTP_PORT=str(http_port))  # fmt: skip
    durations: list[float] = []
    async with running_depwatch(env) as dw:
        scheduler = dw.runtime.scheduler
        await wait_for_async(lambda: proxy.connections_accepted >= 1, timeout=10, interval=0.02)
        # scrape before the first cycle ended (nothing to serve yet but constants) and
        # after (down series), every cycle hanging for the whole per-target deadline
        started_at = time.monotonic()
        while time.monotonic() - started_at < 5 or scheduler.snapshot.cycles < 2:
            assert time.monotonic() - started_at < 20, "cycles did not complete"
            started = time.monotonic()
            resp = await dw.client.get(dw.settings.metrics_path, headers=HEADERS)
            body = await resp.read()
            durations.append(time.monotonic() - started)
            assert resp.status == 200
            assert body.endswith(b"# EOF\n"), "OpenMetrics exposition must be complete"
            for path in ("/healthz", "/readyz", "/status"):
                assert (await dw.client.get(path)).status in (200, 503)
            await asyncio.sleep(0.02)
        m = await dw.metrics()
        assert value(m, "redis_health_check_up", node=proxy.address) == 0
        assert value(m, "redis_health_check_failed_total", node=proxy.address,
                     reason="timeout") >= 1  # fmt: skip
        assert value(m, "depwatch_build_info", version=__version__,
                     python_version=platform.python_version()) == 1  # fmt: skip
    assert len(durations) >= 50
    assert max(durations) < SCRAPE_TIMEOUT - 0.1, sorted(durations)[-5:]
    assert statistics.median(durations) < 0.05, statistics.median(durations)

