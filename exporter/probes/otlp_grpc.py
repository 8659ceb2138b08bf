"""OTLP/gRPC probe: one empty ExportMetricsServiceRequest over ``grpc.aio``.

Exactly one RPC per probe: retries (including transparent ones) are off,
``wait_for_ready=False`` makes a failed connect fail the RPC at once instead of
waiting out reconnect backoff, and each probe gets its own channel with a local
subchannel pool, closed afterwards. So every probe dials a fresh connection (as an
application's exporter does after its connection broke) and never inherits the
failure state or backoff of an earlier probe's connection. The cost, one
connection per probe per interval, is the point of the probe.

gRPC keeps process-wide state (its event-engine threads and the aio poller).
grpc.aio starts it when the first aio channel is made and tears it down when the
last one closes, so a channel per probe paid for starting and stopping about seven
threads every cycle (~4 CPU-ms). The first probe therefore takes one reference of
its own (:func:`grpc.aio.init_grpc_aio`) and keeps the runtime up for the life of
the process. depwatch never forks after the first probe.

gRPC's C core logs to stderr on its own (TLS handshake failures, for instance),
which would break depwatch's one-JSON-object-per-line logs; ``GRPC_VERBOSITY`` is
read once, when grpc is first imported, so it is defaulted to ``NONE`` here (an
explicit setting wins). Whatever imports grpc first must do the same.

The failure reason comes from the status code and, for failures gRPC generates
itself, from the details text (refused, reset, TLS, not-HTTP/2 are all
``UNAVAILABLE`` to gRPC). Details a *server* sent are never parsed: a collector
answering ``UNAVAILABLE: connection refused`` (its own exporter's error) is
``grpc_unavailable``, not a refused connection.
"""

from __future__ import annotations

import os

# Before `import grpc`: the C core reads it once (see the module docstring).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import asyncio
import functools
import ipaddress
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import structlog
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as pb_grpc

from exporter import __version__
from exporter.model import OtlpProbeResult, Reason
from exporter.otlp_config import OtlpSettings, format_hostport
from exporter.probes.otlp_http import (
    MAX_RESPONSE_BYTES,
    describe_partial_success,
    target_result,
)

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from exporter.otlp_targets import OtlpTarget

__all__ = ["channel_options", "classify_rpc_error", "probe"]


#: Details prefixes of failures gRPC itself generates (never sent by a server):
#: connect failures, a stream broken by the transport, name resolution.
_CLIENT_PREFIXES = (
    "failed to connect to all addresses",
    "Stream removed",
    "errors resolving",
    "DNS resolution failed",
)
#: The peer speaks something other than gRPC: HTTP/1.x, HTTP/2 without gRPC
#: (an HTTP status, no grpc-status), or an answer too big to be an export response.
_PROTOCOL_MARKERS = (
    "Trying to connect an http1.x server",
    "Failed parsing HTTP/2",
    "Expected SETTINGS frame",
    "Received http2 header with status",
    "No status received",
    "Received message larger than max",
)
#: Checked in order against gRPC-generated details.
_TRANSPORT_MARKERS: tuple[tuple[str, Reason], ...] = (
    ("Connection refused", Reason.CONNECTION_REFUSED),
    ("Connection reset", Reason.CONNECTION_RESET),
    ("Broken pipe", Reason.CONNECTION_RESET),
    ("Socket closed", Reason.CONNECTION_RESET),
    ("GOAWAY received", Reason.CONNECTION_RESET),
    ("Connection timed out", Reason.TIMEOUT),
    ("Tls handshake failed", Reason.TLS),
    ("Handshake failed", Reason.TLS),
    ("Hostname Verification", Reason.TLS),
    ("SSL_ERROR", Reason.TLS),
    ("CERTIFICATE_VERIFY_FAILED", Reason.TLS),
    ("security handshaker", Reason.TLS),  # "Failed to create security handshaker." (bad CA)
    ("errors resolving", Reason.DNS),
    ("DNS resolution failed", Reason.DNS),
    ("Domain name not found", Reason.DNS),
)


def classify_rpc_error(code: grpc.StatusCode, details: str) -> str:
    """The reason for a failed RPC: a :class:`Reason` value or ``grpc_<code>``."""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Reason.TIMEOUT
    if any(marker in details for marker in _PROTOCOL_MARKERS):
        return Reason.PROTOCOL
    if details.startswith(_CLIENT_PREFIXES):
        for marker, reason in _TRANSPORT_MARKERS:
            if marker in details:
                return reason
        return Reason.OTHER
    return f"grpc_{code.name.lower()}"


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, _stamp: tuple[int, int]) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read(path: str | None) -> bytes | None:
    """A PEM file's bytes, re-read when the file changes (certificate rotation)."""
    if not path:
        return None
    st = os.stat(path)
    return _read_cached(path, (st.st_mtime_ns, st.st_size))


def _credentials(settings: OtlpSettings) -> grpc.ChannelCredentials:
    """Raises OSError / ValueError when a file cannot be read or holds no PEM certificate
    (gRPC itself would only say "Failed to create security handshaker")."""
    roots = _read(settings.ca_file)
    if roots is not None and b"-----BEGIN CERTIFICATE-----" not in roots:
        raise ValueError("the CA file holds no PEM certificate")
    return grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=_read(settings.client_key_file),
        certificate_chain=_read(settings.client_cert_file),
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def channel_options(target: OtlpTarget, settings: OtlpSettings) -> list[tuple[str, str | int]]:
    options: list[tuple[str, str | int]] = [
        ("grpc.enable_retries", 0),
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_http_proxy", 0),
        ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
        ("grpc.primary_user_agent", f"depwatch/{__version__}"),
        # the :authority the application would send: the name, not the dialled address
        ("grpc.default_authority", format_hostport(settings.host, target.port)),
    ]
    if target.tls and not _is_ip(settings.host):
        # verify the certificate against the configured name while dialling an IP
        options.append(("grpc.ssl_target_name_override", settings.host))
    return options


def _metadata(settings: OtlpSettings) -> tuple[tuple[str, str | bytes], ...]:
    # gRPC wants lowercase keys (parse_otlp_env lowercases) and bytes for "-bin" keys
    return tuple((k, v.encode() if k.endswith("-bin") else v) for k, v in settings.headers)


@functools.cache
def _hold_grpc_runtime() -> None:
    """Keep grpc.aio's runtime up between probes (see the module docstring): the
    cache makes this take its one reference once per process."""
    grpc.aio.init_grpc_aio()


async def probe(
    target: OtlpTarget,
    settings: OtlpSettings,
    *,
    time_limit: float | None = None,
    log: FilteringBoundLogger | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> OtlpProbeResult:
    """Send one empty export to ``target``; never raises for a target failure."""
    log = log or structlog.get_logger(__name__)
    budget = settings.timeout_seconds if time_limit is None else time_limit

    def failed(reason: str, error: str) -> OtlpProbeResult:
        return target_result(target, reason, error, log=log)

    _hold_grpc_runtime()
    address = format_hostport(target.address, target.port)
    options = channel_options(target, settings)
    if target.tls:
        try:
            credentials = _credentials(settings)
        except (OSError, ValueError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
            return failed(Reason.TLS, f"cannot read the TLS files: {detail}")
        channel = grpc.aio.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.aio.insecure_channel(address, options=options)

    start = clock()
    try:
        stub = pb_grpc.MetricsServiceStub(channel)
        # grpc's deadline ends the RPC; asyncio.timeout backs it up should grpc not.
        async with asyncio.timeout(budget * 1.05 + 0.05):
            response = await stub.Export(
                pb.ExportMetricsServiceRequest(),
                timeout=budget,
                metadata=_metadata(settings),
                wait_for_ready=False,
            )
        elapsed = clock() - start
    except grpc.aio.AioRpcError as exc:
        details = exc.details() or ""
        short = details.removeprefix("failed to connect to all addresses; last error: ")
        return failed(classify_rpc_error(exc.code(), details), f"{exc.code().name}: {short}")
    except TimeoutError:
        return failed(Reason.TIMEOUT, "deadline exceeded")
    except Exception as exc:  # noqa: BLE001 - e.g. metadata grpc refuses; a probe never raises
        # only the type: the message may quote the metadata, i.e. header values
        return failed(Reason.OTHER, f"{type(exc).__name__} while sending the request")
    finally:
        await channel.close(grace=None)

    return target_result(target, None, duration=elapsed,
                         partial=describe_partial_success(response), log=log)  # fmt: skip
