"""Parsers for setting values: Go durations, booleans, addresses.

Each raises :class:`ValueError` with a message saying what is accepted; the
settings loader adds the variable name and turns it into a one-line exit-2 error.
"""

from __future__ import annotations

import re

__all__ = ["parse_bool", "parse_duration", "parse_host_port", "parse_positive_int"]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# ASCII digits only (re.ASCII): Go rejects Arabic-Indic and other Unicode digits too
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
_BARE_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+", re.ASCII)

DURATION_ACCEPTED = "a positive duration such as 500ms, 2s, 1m30s, or bare seconds (2, 0.5)"
BOOL_ACCEPTED = "true/false, 1/0, yes/no"

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def parse_duration(text: str) -> float:
    """Parse a Go duration (``1m30s``) or bare seconds (``2``, ``0.5``) into seconds.

    Only positive values are accepted: every duration depwatch takes is a timeout,
    an interval or a backoff, where zero or negative has no sane meaning.
    """
    value = text.strip()
    if _BARE_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        pos = 0
        seconds = 0.0
        for match in _DURATION_PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos == 0 or pos != len(value):
            raise ValueError(DURATION_ACCEPTED)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(DURATION_ACCEPTED)
    return seconds


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(BOOL_ACCEPTED)


def parse_positive_int(text: str, *, maximum: int | None = None) -> int:
    accepted = "a positive integer" + (f" up to {maximum}" if maximum else "")
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(accepted)
    value = int(digits, 10)
    if value <= 0 or (maximum is not None and value > maximum):
        raise ValueError(accepted)
    return value


def parse_host_port(text: str, *, default_host: str = "") -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port`` or ``:port`` (host then ``default_host``)."""
    accepted = "host:port (IPv6 as [addr]:port)"
    value = text.strip()
    if value.startswith("["):
        host, sep, port_text = value[1:].partition("]:")
        if not sep:
            raise ValueError(accepted)
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(accepted)
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(accepted)
    return (host or default_host), int(port_text)
