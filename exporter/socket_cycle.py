"""Socket-table part of a probe cycle (wired once the socket parser lands)."""

from __future__ import annotations

from typing import Any


def add_socket_part(settings: Any, runtime: Any, parts: Any, *, log: Any) -> None:
    return None
