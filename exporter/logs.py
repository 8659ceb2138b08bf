"""structlog configuration: one JSON object a line with ts, level, msg and context."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

__all__ = ["configure_logging", "get_logger"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


def _rename_event(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """``ts``, ``level`` and ``msg`` first, then the context keys."""
    head = {"ts": event.pop("ts", None), "level": event.pop("level", None),
            "msg": event.pop("event", "")}  # fmt: skip
    head.update(event)
    return head


def configure_logging(level: str = "info", fmt: str = "json",
                      stream: TextIO | None = None) -> None:
    """Configure structlog once at start-up (``ts`` is RFC 3339 UTC with ms and ``Z``)."""
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%Y-%m-%dT%H:%M:%S.%fZ", utc=True, key="ts"),
        _trim_microseconds,
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    else:
        processors += [_rename_event, structlog.processors.JSONRenderer(sort_keys=False)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def _trim_microseconds(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    ts = event.get("ts")
    if isinstance(ts, str) and len(ts) == 27:  # 2026-01-02T03:04:05.123456Z
        event["ts"] = ts[:23] + "Z"
    return event


def get_logger() -> FilteringBoundLogger:
    return structlog.get_logger("depwatch")
