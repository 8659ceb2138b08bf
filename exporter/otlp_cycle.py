"""OTLP part of a probe cycle: probe the collector on both ports, then compare the
application's configuration with what works (and, through the socket table, with
the ports the pod really talks to)."""

from __future__ import annotations

from typing import Any

import aiohttp
from structlog.typing import FilteringBoundLogger

from exporter.config import Settings
from exporter.model import ClusterTopology, OtlpProbeResult, Reason, Snapshot, SocketObservation
from exporter.otlp_config import OtlpSettings
from exporter.otlp_mismatch import compute_mismatch, describe
from exporter.otlp_targets import probe_collector
from exporter.scheduler import CycleParts

__all__ = ["OtlpPart", "add_otlp_part"]


class OtlpPart:
    """Probes the collector each cycle; one HTTP session for the process lifetime."""

    def __init__(self, settings: Settings, otlp: OtlpSettings, *,
                 log: FilteringBoundLogger) -> None:  # fmt: skip
        self._settings = settings
        self._otlp = otlp
        self._log = log
        self._session: aiohttp.ClientSession | None = None
        self._addresses: tuple[str, ...] = ()
        #: (endpoint, protocol) -> last cycle's connection_refused result
        self._refused: dict[tuple[str, str], OtlpProbeResult] = {}

    @property
    def time_limit(self) -> float:
        """The per-target deadline: the OTLP timeout, capped by depwatch's own."""
        return min(self._otlp.timeout_seconds, self._settings.target_deadline)

    async def __call__(self, _topology: ClusterTopology | None) -> dict[str, object]:
        from exporter.probes.otlp_http import new_session

        if self._session is None:
            self._session = new_session()
        probe = await probe_collector(
            self._otlp, grpc_port=self._settings.otlp_grpc_port,
            http_port=self._settings.otlp_http_port, session=self._session,
            time_limit=self.time_limit, previous_addresses=self._addresses,
            refused_before=self._refused, log=self._log,
        )  # fmt: skip
        if probe.resolution.ok:
            self._addresses = probe.resolution.addresses
        self._refused = {(r.endpoint, r.protocol): r for r in probe.results
                         if r.reason == Reason.CONNECTION_REFUSED}  # fmt: skip
        return {"otlp_results": probe.results, "otlp_config": (self._otlp.config_info(),)}

    def _observed_ports(self, sockets: SocketObservation | None) -> frozenset[int] | None:
        """OTLP ports of the pod's live sockets to the collector (None: table unreadable).

        Only OTLP ports count: a collector address may serve unrelated ports too (and on
        a shared host, such as 127.0.0.1, everything does).
        """
        if sockets is None or sockets.error is not None:
            return None
        otlp_ports = {self._settings.otlp_grpc_port, self._settings.otlp_http_port,
                      self._otlp.port}  # fmt: skip
        return frozenset(p for p in sockets.collector_live_ports if p in otlp_ports)

    def combine(self, extra: dict[str, object]) -> dict[str, object]:
        """Mismatch flags from this cycle's probes and socket table."""
        results: tuple[OtlpProbeResult, ...] = extra.get("otlp_results", ())  # type: ignore[assignment]
        sockets = extra.get("sockets")
        observed = self._observed_ports(sockets if isinstance(sockets, SocketObservation)
                                        else None)  # fmt: skip
        flags = compute_mismatch(self._otlp, results, grpc_port=self._settings.otlp_grpc_port,
                                 http_port=self._settings.otlp_http_port,
                                 observed_ports=observed)  # fmt: skip
        signal = self._otlp.config_info().signal
        return {"otlp_mismatch": {(signal, reason): flag for reason, flag in flags.items()}}

    def section(self, snapshot: Snapshot) -> dict[str, Any]:
        """The check report's plain-English OTLP advice."""
        results = [st.last for st in snapshot.otlp.values() if st.last is not None]
        flags = {reason: flag for (_, reason), flag in snapshot.otlp_mismatch.items()}
        observed = self._observed_ports(snapshot.sockets)
        lines = describe(self._otlp, results, flags, grpc_port=self._settings.otlp_grpc_port,
                         http_port=self._settings.otlp_http_port,
                         observed_ports=observed)  # fmt: skip
        return {"title": "OTLP configuration vs reality", "lines": lines}

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def add_otlp_part(settings: Settings, runtime: Any, parts: CycleParts, *,
                  log: FilteringBoundLogger) -> None:  # fmt: skip
    if settings.otlp is None:
        return
    part = OtlpPart(settings, settings.otlp, log=log)
    parts.parts.append(part)
    parts.combiners.append(part.combine)
    runtime.sections.append(("otlp_advice", part.section))
    runtime.closers.append(part.close)
