"""Assemble a scheduler and its optional parts from settings (shared by serve/check/demo)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from structlog.typing import FilteringBoundLogger

from exporter.config import Settings
from exporter.credentials import SecretFetcher, build_credentials
from exporter.report import SectionBuilder
from exporter.scheduler import Clock, CycleParts, Scheduler

__all__ = ["Runtime", "build_runtime"]


@dataclass
class Runtime:
    scheduler: Scheduler
    sections: list[tuple[str, SectionBuilder]] = field(default_factory=list)
    extra_problems: Callable[[], Sequence[str]] = lambda: ()
    closers: list[Callable[[], object]] = field(default_factory=list)

    async def close(self) -> None:
        await self.scheduler.close()
        for closer in self.closers:
            result = closer()
            if hasattr(result, "__await__"):
                await result  # type: ignore[misc]


def build_runtime(settings: Settings, *, log: FilteringBoundLogger, clock: Clock | None = None,
                  secret_fetcher: SecretFetcher | None = None) -> Runtime:
    """Everything a cycle needs; logs the one-time start-up notes."""
    if not settings.redis_enabled:
        log.info("Redis probing is off: REDIS_ADDRESS is unset")
    if settings.redis_tls_insecure_skip_verify:
        log.warning("REDIS_TLS_INSECURE_SKIP_VERIFY is set: Redis certificates are not verified")
    if settings.otlp is None:
        log.info("OTLP probing is off: OTEL_EXPORTER_OTLP_ENDPOINT is unset")
    credentials = build_credentials(settings, fetch=secret_fetcher)
    parts = CycleParts()
    runtime = Runtime(
        scheduler=Scheduler(settings, log=log, credentials=credentials, clock=clock, parts=parts)
    )
    _add_optional_parts(settings, runtime, parts, log=log)
    return runtime


def _add_optional_parts(settings: Settings, runtime: Runtime, parts: CycleParts, *,
                        log: FilteringBoundLogger) -> None:
    """OTLP probes and the socket table, when their modules are configured."""
    from exporter.otlp_cycle import add_otlp_part
    from exporter.socket_cycle import add_socket_part

    add_otlp_part(settings, runtime, parts, log=log)
    add_socket_part(settings, runtime, parts, log=log)
