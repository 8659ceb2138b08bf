"""Log what changed between two snapshots: up/down, mismatch found/cleared.

Successes are not logged; a target that stays down is re-logged at most once a
minute (``repeat_after``), so a dead node does not flood the logs.
"""

from __future__ import annotations

from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

from exporter.model import Snapshot

__all__ = ["TransitionLog"]


class TransitionLog:
    def __init__(self, log: FilteringBoundLogger, *, clock: Callable[[], float],
                 repeat_after: float = 60.0) -> None:
        self._log = log
        self._clock = clock
        self._repeat_after = repeat_after
        self._last_logged: dict[tuple[str, ...], float] = {}

    def _down(self, key: tuple[str, ...], first: bool, msg: str, **context: object) -> None:
        now = self._clock()
        last = self._last_logged.get(key)
        if first or last is None or now - last >= self._repeat_after:
            self._log.error(msg, **context)
            self._last_logged[key] = now

    def record(self, before: Snapshot, after: Snapshot) -> None:
        self._record_redis(before, after)
        self._record_otlp(before, after)

    def _record_redis(self, before: Snapshot, after: Snapshot) -> None:
        for address, state in after.nodes.items():
            check = state.last_check
            if check is None:
                continue
            was = before.nodes.get(address)
            was_up = was.up if was is not None else None
            key = ("redis", address)
            if not check.ok:
                self._down(key, was_up is not False, "Redis health check failed", node=address,
                           reason=str(check.reason), attempt=check.attempts,
                           error=check.error)  # fmt: skip
            elif was_up is False:
                self._log.info("Redis health check recovered", node=address,
                               attempt=check.attempts)  # fmt: skip
                self._last_logged.pop(key, None)
            elif check.attempt_failures:
                self._log.warning("Redis health check recovered by retry", node=address,
                                  reason=str(check.attempt_failures[-1]),
                                  attempt=check.attempts)  # fmt: skip
        for address in sorted(a for a in before.nodes if a not in after.nodes):
            self._log.info("Redis node left the cluster", node=address)
            self._last_logged.pop(("redis", address), None)

    def _record_otlp(self, before: Snapshot, after: Snapshot) -> None:
        for key_pair, state in after.otlp.items():
            last = state.last
            if last is None:
                continue
            old = before.otlp.get(key_pair)
            key = ("otlp", *key_pair)
            if not last.ok:
                self._down(key, old is None or old.up is not False, "OTLP export probe failed",
                           endpoint=last.endpoint, protocol=last.protocol, reason=last.reason,
                           error=last.error)  # fmt: skip
            elif old is not None and old.up is False:
                self._log.info("OTLP export probe recovered", endpoint=last.endpoint,
                               protocol=last.protocol)  # fmt: skip
                self._last_logged.pop(key, None)
        for (signal, reason), flag in after.otlp_mismatch.items():
            old_flag = before.otlp_mismatch.get((signal, reason), False)
            if flag and not old_flag:
                self._log.warning("OTLP configuration mismatch found", signal=signal,
                                  reason=reason)  # fmt: skip
            elif old_flag and not flag:
                self._log.info("OTLP configuration mismatch cleared", signal=signal,
                               reason=reason)  # fmt: skip
