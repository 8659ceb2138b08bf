"""OTLP part of a probe cycle (wired once the OTLP probes land)."""

from __future__ import annotations

from typing import Any


def add_otlp_part(settings: Any, runtime: Any, parts: Any, *, log: Any) -> None:
    return None
