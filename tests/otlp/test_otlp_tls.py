"""TLS: the CA from OTEL_EXPORTER_OTLP_CERTIFICATE, verification against the configured
name while dialling the resolved IP, and failures classified as ``tls``."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from support.otlp_receivers import TLS_NAME, Receivers, TlsFiles

from exporter.model import OtlpProbeResult, Reason
from exporter.otlp_config import OtlpSettings, parse_otlp_env
from exporter.otlp_targets import OtlpTarget
from exporter.probes import otlp_grpc, otlp_http

pytestmark = pytest.mark.timeout(30)

PROTOCOLS = ["grpc", "http/protobuf"]


def tls_settings(protocol: str, port: int, ca_file: str, host: str = TLS_NAME) -> OtlpSettings:
    settings = parse_otlp_env(
        {
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"https://{host}:{port}/v1/metrics",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_CERTIFICATE": ca_file,
        }
    )
    assert settings is not None
    return settings


async def probe(
    settings: OtlpSettings, port: int, session: aiohttp.ClientSession, *, tls: bool = True
) -> OtlpProbeResult:
    # the certificate names only "localhost"; the probe dials the IP
    target = OtlpTarget("127.0.0.1", port, settings.protocol, tls, settings.path)
    if settings.protocol == "grpc":
        return await otlp_grpc.probe(target, settings, time_limit=2)
    return await otlp_http.probe(target, settings, session=session, time_limit=2)


async def tls_receiver(receivers: Receivers, protocol: str, tls: TlsFiles) -> int:
    if protocol == "grpc":
        return (await receivers.grpc(tls=tls)).port
    return (await receivers.http(tls=tls)).port


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_ca_from_certificate_setting_verifies_the_name(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles, protocol: str
) -> None:
    port = await tls_receiver(receivers, protocol, tls_files)
    result = await probe(tls_settings(protocol, port, tls_files.ca_file), port, http_session)
    assert result.ok, result


@pytest.mark.asyncio
async def test_scheme_less_grpc_endpoint_uses_tls(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles
) -> None:
    receiver = await receivers.grpc(tls=tls_files)
    settings = parse_otlp_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"{TLS_NAME}:{receiver.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": tls_files.ca_file,
        }
    )
    assert settings is not None
    assert settings.tls
    result = await probe(settings, receiver.port, http_session)
    assert result.ok, result
    assert receiver.requests == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_wrong_ca_is_tls(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles, protocol: str
) -> None:
    port = await tls_receiver(receivers, protocol, tls_files)
    result = await probe(tls_settings(protocol, port, tls_files.wrong_ca_file), port, http_session)
    assert result.reason == Reason.TLS, result


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_wrong_name_is_tls(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles, protocol: str
) -> None:
    port = await tls_receiver(receivers, protocol, tls_files)
    settings = tls_settings(protocol, port, tls_files.ca_file, host="collector.example")
    result = await probe(settings, port, http_session)
    assert result.reason == Reason.TLS, result


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_tls_to_a_plaintext_receiver_is_tls(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles, protocol: str
) -> None:
    receiver = await (receivers.grpc() if protocol == "grpc" else receivers.http())
    port = receiver.port
    result = await probe(tls_settings(protocol, port, tls_files.ca_file), port, http_session)
    assert result.reason == Reason.TLS, result


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_plaintext_to_a_tls_receiver_fails(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles, protocol: str
) -> None:
    """The TLS server hangs up on a plaintext client: reported as the peer closing."""
    port = await tls_receiver(receivers, protocol, tls_files)
    settings = tls_settings(protocol, port, tls_files.ca_file)
    result = await probe(settings, port, http_session, tls=False)
    assert result.reason == Reason.CONNECTION_RESET, result


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unreadable_ca_file_is_tls_not_a_crash(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles, protocol: str
) -> None:
    port = await tls_receiver(receivers, protocol, tls_files)
    settings = tls_settings(protocol, port, tls_files.ca_file + ".missing")
    result = await probe(settings, port, http_session)
    assert result.reason == Reason.TLS
    assert result.error is not None
    assert "TLS files" in result.error


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_ca_file_without_a_certificate_is_tls(
    receivers: Receivers,
    http_session: aiohttp.ClientSession,
    tls_files: TlsFiles,
    protocol: str,
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    port = await tls_receiver(receivers, protocol, tls_files)
    result = await probe(tls_settings(protocol, port, str(garbage)), port, http_session)
    assert result.reason == Reason.TLS, result


def install(source: str, target: Path, extra: bytes = b"") -> None:
    target.write_bytes(Path(source).read_bytes() + extra)


@pytest.mark.asyncio
async def test_rotated_ca_file_is_reread(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles, tmp_path: Path
) -> None:
    receiver = await receivers.grpc(tls=tls_files)
    ca = tmp_path / "rotating.pem"
    install(tls_files.wrong_ca_file, ca)
    settings = tls_settings("grpc", receiver.port, str(ca))
    assert (await probe(settings, receiver.port, http_session)).reason == Reason.TLS
    install(tls_files.ca_file, ca, b"\n")  # a new size: picked up even within one mtime tick
    assert (await probe(settings, receiver.port, http_session)).ok


@pytest.mark.asyncio
async def test_grpc_client_certificate(
    receivers: Receivers, http_session: aiohttp.ClientSession, tls_files: TlsFiles
) -> None:
    receiver = await receivers.grpc(tls=tls_files, require_client_cert=True)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://{TLS_NAME}:{receiver.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": tls_files.ca_file,
    }
    without = parse_otlp_env(env)
    with_client = parse_otlp_env(
        {
            **env,
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": tls_files.client_cert_file,
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": tls_files.client_key_file,
        }
    )
    assert without is not None
    assert with_client is not None
    assert (await probe(without, receiver.port, http_session)).ok is False
    assert (await probe(with_client, receiver.port, http_session)).ok
    assert receiver.requests == 1
