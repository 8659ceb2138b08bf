"""Which OTLP probes to send: the collector host resolved to every address, each probed
on the gRPC port, the HTTP port and the configured port.

:func:`build_plan` is pure (addresses in, targets out); :func:`resolve` is the only
I/O here; :func:`probe_collector` puts the two together with the probes for callers
that want one call per cycle.

Every address of the host is probed, so a headless Service shows each collector
pod and a ClusterIP Service its one virtual IP. A name that does not resolve gives
every planned probe the reason ``dns``; the plan then uses the addresses seen last
time (so the same series go down) or, before any success, the host name itself as
the endpoint's host part.

grpc (about 11 MiB of RSS with the threads its runtime starts) is loaded only when a
gRPC probe has to run: until then a gRPC target is first tried with a bare TCP
connect, and while its port refuses (the incident's collector never opened 4317)
grpc is never imported.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import structlog

from exporter.model import OtlpProbeResult, Reason
from exporter.otlp_config import OtlpSettings, format_hostport

if TYPE_CHECKING:
    import aiohttp
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "MAX_ADDRESSES",
    "CollectorProbe",
    "OtlpTarget",
    "Resolution",
    "build_plan",
    "failed_results",
    "probe_collector",
    "resolve",
]

MAX_ADDRESSES = 16
DEFAULT_HTTP_PATH = "/v1/metrics"

GetAddrInfo = Callable[..., Awaitable[list[tuple[Any, ...]]]]


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """One probe to send: a protocol on one address and port."""

    #: IP literal to dial (the host name when it did not resolve)
    address: str
    port: int
    protocol: str
    tls: bool
    #: HTTP request path; "" for grpc
    path: str = ""

    @property
    def endpoint(self) -> str:
        """The ``endpoint`` label: ``ip:port``, IPv6 in brackets."""
        return format_hostport(self.address, self.port)


@dataclass(frozen=True, slots=True)
class Resolution:
    host: str
    addresses: tuple[str, ...]
    #: short description when resolution failed (no secrets: it is about a host name)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class CollectorProbe:
    """One cycle's OTLP probing: what the host resolved to, what was sent, what came back."""

    resolution: Resolution
    plan: tuple[OtlpTarget, ...]
    results: tuple[OtlpProbeResult, ...]


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _stable(addresses: Sequence[str], limit: int) -> tuple[str, ...]:
    """Deduplicated, sorted (IPv4 first) and capped, so that DNS round-robin order
    does not reshuffle the series from one cycle to the next."""
    ips = {ipaddress.ip_address(a) for a in addresses}
    return tuple(str(ip) for ip in sorted(ips, key=lambda ip: (ip.version, ip)))[:limit]


async def resolve(
    host: str,
    *,
    time_limit: float,
    getaddrinfo: GetAddrInfo | None = None,
    limit: int = MAX_ADDRESSES,
) -> Resolution:
    """All addresses of ``host`` (up to ``limit``); IP literals pass through."""
    literal = _ip_literal(host)
    if literal is not None:
        return Resolution(host, (literal,))
    lookup = getaddrinfo or asyncio.get_running_loop().getaddrinfo
    try:
        async with asyncio.timeout(time_limit):
            infos = await lookup(host, None, type=socket.SOCK_STREAM)
    except TimeoutError:
        return Resolution(host, (), error="name resolution timed out")
    except (OSError, UnicodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return Resolution(host, (), error=f"name resolution failed: {detail}")
    found = [
        str(info[4][0]).partition("%")[0]
        for info in infos
        if info[0] in (socket.AF_INET, socket.AF_INET6)
    ]
    if not found:
        return Resolution(host, (), error="name resolution returned no addresses")
    return Resolution(host, _stable(found, limit))


def build_plan(
    settings: OtlpSettings,
    addresses: Sequence[str],
    *,
    grpc_port: int,
    http_port: int,
) -> tuple[OtlpTarget, ...]:
    """Per address: grpc on ``grpc_port``, HTTP on ``http_port``, and the configured
    protocol on the configured port when that is not already one of them.

    The HTTP probe uses ``http/json`` only when the application is configured for it.
    Each protocol uses the TLS an exporter of that protocol would use with the same
    configuration (:meth:`OtlpSettings.tls_for`).
    """
    http_protocol = "http/json" if settings.protocol == "http/json" else "http/protobuf"
    http_path = settings.path if settings.protocol != "grpc" else DEFAULT_HTTP_PATH
    wanted = (
        ("grpc", grpc_port),
        (http_protocol, http_port),
        (settings.protocol, settings.port),
    )
    plan: list[OtlpTarget] = []
    seen: set[tuple[str, int, str]] = set()
    for address in addresses:
        for protocol, port in wanted:
            key = (address, port, protocol)
            if key in seen:
                continue
            seen.add(key)
            path = "" if protocol == "grpc" else http_path
            plan.append(OtlpTarget(address, port, protocol, settings.tls_for(protocol), path))
    return tuple(plan)


def failed_results(
    plan: Sequence[OtlpTarget], reason: str, error: str | None
) -> tuple[OtlpProbeResult, ...]:
    """Results for a plan that could not be sent (e.g. reason ``dns``)."""
    return tuple(
        OtlpProbeResult(
            endpoint=t.endpoint, protocol=t.protocol, ok=False, reason=reason, error=error,
            port=t.port,
        )
        for t in plan
    )  # fmt: skip


async def bare_connect_failure(target: OtlpTarget, time_limit: float) -> str | None:
    """What a bare TCP connect to ``target`` says, when that settles the probe:
    ``connection_refused``, or ``timeout`` (the full probe would wait as long again,
    past the target's deadline); None when the full probe has to run (the connect was
    accepted, and closed at once, or failed some other way for it to classify).

    A port that refused the last probe usually refuses the next one too (the
    incident's collector had no gRPC port, every cycle, in every pod). A connect
    costs about 0.5 CPU-ms; a gRPC probe builds and tears down a channel, about
    2.5 CPU-ms, to learn the same thing.
    """
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(time_limit):
            await asyncio.get_running_loop().sock_connect(sock, (target.address, target.port))
    except ConnectionRefusedError:
        return Reason.CONNECTION_REFUSED
    except TimeoutError:
        return Reason.TIMEOUT
    except OSError:
        return None  # the full probe says what it is
    finally:
        sock.close()
    return None


async def probe_collector(
    settings: OtlpSettings,
    *,
    grpc_port: int,
    http_port: int,
    session: aiohttp.ClientSession,
    time_limit: float | None = None,
    previous_addresses: Sequence[str] = (),
    refused_before: Mapping[tuple[str, str], OtlpProbeResult] | None = None,
    getaddrinfo: GetAddrInfo | None = None,
    log: FilteringBoundLogger | None = None,
) -> CollectorProbe:
    """Resolve, plan and send every probe concurrently; never raises for a target failure.

    ``time_limit`` bounds each probe (and the name lookup); it defaults to the
    application's OTLP timeout. ``session`` comes from :func:`otlp_http.new_session`.
    ``refused_before``: (endpoint, protocol) -> the result of a probe that was
    ``connection_refused`` last cycle. Such a target is first tried with
    :func:`bare_connect_failure`, and so is a gRPC target while grpc is not loaded
    (:func:`_grpc_probe_module`): a refused connect stands for the probe (last
    cycle's result, when there is one), a connect that times out is the probe's
    timeout, and an accepted one gets the full probe in the same cycle.
    """
    from exporter.probes import otlp_http

    log = log or structlog.get_logger(__name__)
    budget = settings.timeout_seconds if time_limit is None else time_limit
    resolution = await resolve(settings.host, time_limit=budget, getaddrinfo=getaddrinfo)
    if not resolution.ok:
        addresses = tuple(previous_addresses) or (settings.host,)
        plan = build_plan(settings, addresses, grpc_port=grpc_port, http_port=http_port)
        log.debug("otlp name resolution failed", host=settings.host, error=resolution.error)
        return CollectorProbe(resolution, plan, failed_results(plan, Reason.DNS, resolution.error))

    plan = build_plan(settings, resolution.addresses, grpc_port=grpc_port, http_port=http_port)

    refused = refused_before or {}

    async def one(target: OtlpTarget) -> OtlpProbeResult:
        prior = refused.get((target.endpoint, target.protocol))
        grpc_unloaded = target.protocol == "grpc" and _GRPC_PROBE not in sys.modules
        if prior is not None or grpc_unloaded:
            failure = await bare_connect_failure(target, budget)
            if failure == Reason.CONNECTION_REFUSED and prior is not None:
                return prior
            if failure is not None:
                return otlp_http.target_result(target, failure, _BARE_CONNECT_ERRORS[failure],
                                               log=log)  # fmt: skip
        if target.protocol == "grpc":
            otlp_grpc = await _grpc_probe_module()
            return await otlp_grpc.probe(target, settings, time_limit=budget, log=log)
        return await otlp_http.probe(target, settings, session=session, time_limit=budget, log=log)

    results = await asyncio.gather(*(one(t) for t in plan))
    return CollectorProbe(resolution, plan, tuple(results))


_GRPC_PROBE = "exporter.probes.otlp_grpc"
_BARE_CONNECT_ERRORS = {
    Reason.CONNECTION_REFUSED: "connection refused (TCP connect; no request sent)",
    Reason.TIMEOUT: "TCP connect timed out (no request sent)",
}


async def _grpc_probe_module() -> ModuleType:
    """:mod:`exporter.probes.otlp_grpc`, imported on first need in a worker thread, so
    the event loop (and /metrics) keeps going while grpc loads (about 0.1 s)."""
    module = sys.modules.get(_GRPC_PROBE)
    if module is None:
        module = await asyncio.to_thread(importlib.import_module, _GRPC_PROBE)
    return module
