"""The aiohttp application: /metrics, /healthz, /readyz, /status and a landing page.

The probe loop is started and cancelled through ``cleanup_ctx`` (aiohttp's
background-tasks pattern); handlers only read the scheduler's latest snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from html import escape

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.config import Settings
from exporter.exposition import CachedExposition
from exporter.metrics import build_registry
from exporter.report import SectionBuilder, render_json, status_document
from exporter.scheduler import Scheduler

__all__ = ["SCHEDULER", "create_app"]

SCHEDULER = web.AppKey("scheduler", Scheduler)
_LOOP_TASK = web.AppKey("loop_task", asyncio.Task)

_LANDING = """<!doctype html>
<html><head><title>depwatch</title></head>
<body><h1>depwatch {version}</h1>
<p>Watches this pod's Redis and OpenTelemetry Collector dependencies.</p>
<ul>
<li><a href="{metrics}">{metrics}</a> &ndash; Prometheus metrics (from the last probe cycle)</li>
<li><a href="/status">/status</a> &ndash; latest results as JSON</li>
<li><a href="/healthz">/healthz</a> &ndash; probe loop alive</li>
<li><a href="/readyz">/readyz</a> &ndash; first cycle completed</li>
</ul></body></html>
"""


def create_app(
    settings: Settings,
    *,
    scheduler: Scheduler,
    registry: CollectorRegistry | None = None,
    sections: Sequence[tuple[str, SectionBuilder]] = (),
    extra_problems: Callable[[], Sequence[str]] = lambda: (),
    middlewares: Sequence[web.Middleware] = (),
    run_loop: bool = True,
) -> web.Application:
    """Build the app; with ``run_loop`` the probe loop runs for the app's lifetime."""
    app = web.Application(middlewares=list(middlewares))
    app[SCHEDULER] = scheduler
    registry = registry or build_registry(lambda: scheduler.snapshot)

    async def healthz(_: web.Request) -> web.Response:
        if scheduler.alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="probe loop stalled\n")

    async def readyz(_: web.Request) -> web.Response:
        if scheduler.first_cycle_done.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="first probe cycle not completed\n")

    async def status(_: web.Request) -> web.Response:
        document = status_document(scheduler.snapshot, sections=sections,
                                   extra_problems=extra_problems())  # fmt: skip
        return web.Response(text=render_json(document), content_type="application/json")

    async def landing(_: web.Request) -> web.Response:
        html = _LANDING.format(version=escape(__version__), metrics=escape(settings.metrics_path))
        return web.Response(text=html, content_type="text/html")

    exposition = CachedExposition(registry, token=lambda: scheduler.snapshot)
    app.router.add_get(settings.metrics_path, exposition.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/", landing)

    if run_loop:
        app.cleanup_ctx.append(_probe_loop)
    return app


async def _probe_loop(app: web.Application) -> AsyncIterator[None]:
    scheduler = app[SCHEDULER]
    task = asyncio.create_task(scheduler.run_forever(), name="depwatch-probe-loop")
    app[_LOOP_TASK] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await scheduler.close()
