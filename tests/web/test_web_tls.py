"""TLS on a live aiohttp server: server certs, client certs, versions, curves, rotation."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from exporter.config import Settings
from exporter.web_config import load_web_config
from exporter.web_security import load_web_security
from exporter.web_tls import TlsReloader

WriteConfig = Callable[[str], Path]
PATHS = ("/metrics", "/healthz", "/readyz", "/status", "/")
# Any of these is how a refused TLS client sees it (TLS 1.3 reports a missing client
# certificate on the first read, after the client thinks the handshake is done).
MTLS = "  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
REFUSED = (aiohttp.ClientError, ssl.SSLError, ConnectionError)


async def get(url: str, ctx: ssl.SSLContext | bool, **kwargs: Any) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx, **kwargs) as resp:
        await resp.read()
        return resp


async def presented_cert(base_url: str, ctx: ssl.SSLContext) -> bytes:
    """DER of the certificate the server presents on a new connection."""
    port = int(base_url.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                              server_hostname="localhost")  # fmt: skip
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    assert der is not None
    return bytes(der)


def der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def tls_config(write_config: WriteConfig, extra: str = "") -> Settings:
    text = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n" + extra
    return Settings(web_config_file=str(write_config(text)))


@pytest.mark.asyncio
async def test_tls_on_every_endpoint(serve: Any, pki: Any, write_config: WriteConfig) -> None:
    pki.server_files()
    security = load_web_security(tls_config(write_config))
    async with serve(security) as base:
        assert base.startswith("https://")
        for path in PATHS:
            resp = await get(base + path, pki.client_context())
            assert resp.status == 200, path
        # the client verifies the server: a client trusting another CA refuses it
        wrong = ssl.create_default_context(cadata=pki.other_ca.cert_pem.bytes().decode())
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await get(base + "/metrics", wrong)
        # plain HTTP to the TLS port gets no answer
        with pytest.raises(aiohttp.ClientError):
            await get(base.replace("https", "http") + "/healthz", False)


@pytest.mark.asyncio
async def test_mtls_require_and_verify(serve: Any, pki: Any, write_config: WriteConfig) -> None:
    pki.server_files()
    settings = tls_config(write_config, MTLS)
    async with serve(load_web_security(settings)) as base:
        with pytest.raises(REFUSED):  # no client certificate
            await get(base + "/healthz", pki.client_context())
        stranger = pki.other_ca.issue_cert("client.test")
        with pytest.raises(REFUSED):  # a client certificate from another CA
            await get(base + "/healthz", pki.client_context(stranger))
        client = pki.ca.issue_cert("client.test")
        for path in PATHS:
            assert (await get(base + path, pki.client_context(client))).status == 200


@pytest.mark.asyncio
async def test_verify_client_cert_if_given(serve: Any, pki: Any,
                                           write_config: WriteConfig) -> None:  # fmt: skip
    pki.server_files()
    optional = MTLS.replace("RequireAndVerifyClientCert", "VerifyClientCertIfGiven")
    settings = tls_config(write_config, optional)
    async with serve(load_web_security(settings)) as base:
        assert (await get(base + "/metrics", pki.client_context())).status == 200
        good = pki.ca.issue_cert("client.test")
        assert (await get(base + "/metrics", pki.client_context(good))).status == 200
        with pytest.raises(REFUSED):
            await get(base + "/metrics", pki.client_context(pki.other_ca.issue_cert("x.test")))


@pytest.mark.asyncio
async def test_client_allowed_sans(serve: Any, pki: Any, write_config: WriteConfig) -> None:
    pki.server_files()
    settings = tls_config(write_config, MTLS + "  client_allowed_sans: [scraper.test, '::1']\n")
    async with serve(load_web_security(settings)) as base:
        for allowed in (pki.ca.issue_cert("scraper.test"), pki.ca.issue_cert("0:0::1")):
            assert (await get(base + "/metrics", pki.client_context(allowed))).status == 200
        other = pki.client_context(pki.ca.issue_cert("intruder.test"))
        resp = await get(base + "/metrics", other)
        assert resp.status == 403


@pytest.mark.asyncio
async def test_versions_are_enforced(serve: Any, pki: Any, write_config: WriteConfig) -> None:
    pki.server_files()
    async with serve(load_web_security(tls_config(write_config, "  max_version: TLS12\n"))) as b:
        ctx = pki.client_context()
        assert (await get(b + "/healthz", ctx)).status == 200
        port = int(b.rsplit(":", 1)[1])
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                  server_hostname="localhost")  # fmt: skip
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        writer.close()
        await writer.wait_closed()
    async with serve(load_web_security(tls_config(write_config, "  min_version: TLS13\n"))) as b:
        old_client = pki.client_context()
        old_client.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(REFUSED):
            await get(b + "/healthz", old_client)


@pytest.mark.asyncio
async def test_curve_preference_restricts_key_exchange(
    serve: Any, pki: Any, write_config: WriteConfig
) -> None:
    pki.server_files()
    settings = tls_config(write_config, "  curve_preferences: [CurveP384]\n")
    async with serve(load_web_security(settings)) as base:
        p384 = pki.client_context()
        p384.set_ecdh_curve("secp384r1")
        assert (await get(base + "/healthz", p384)).status == 200
        x25519 = pki.client_context()
        x25519.set_ecdh_curve("X25519")
        with pytest.raises(REFUSED):
            await get(base + "/healthz", x25519)


@pytest.mark.asyncio
async def test_certificate_rotation_without_restart(serve: Any, pki: Any,
                                                    write_config: WriteConfig) -> None:  # fmt: skip
    first = pki.ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = pki.write(first, "server")
    security = load_web_security(tls_config(write_config), reload_check=0)
    ctx = pki.client_context()
    async with serve(security) as base:
        assert await presented_cert(base, ctx) == der(first)

        second = pki.ca.issue_cert("localhost", "127.0.0.1")
        # half-way through a rotation: new cert, old key -> keep serving the old pair
        cert_path.write_bytes(second.cert_chain_pems[0].bytes())
        assert await presented_cert(base, ctx) == der(first)
        key_path.write_bytes(second.private_key_pem.bytes())
        assert await presented_cert(base, ctx) == der(second)
        assert (await get(base + "/metrics", ctx)).status == 200

        # Kubernetes-style: the files are replaced through a rename
        third = pki.ca.issue_cert("localhost", "127.0.0.1")
        new_cert, new_key = pki.write(third, "staging")
        new_key.replace(key_path)
        new_cert.replace(cert_path)
        assert await presented_cert(base, ctx) == der(third)


def test_reload_checks_at_most_every_interval(pki: Any, write_config: WriteConfig) -> None:
    pki.server_files()
    config = load_web_config(write_config("tls_server_config: {cert_file: server.pem, "
                                          "key_file: server.key}\n"))  # fmt: skip
    assert config.tls is not None
    now = [100.0]
    reloader = TlsReloader(config.tls, config.path, check_every=5.0, clock=lambda: now[0])
    pki.server_files()  # rotated on disk
    now[0] += 4.9
    reloader.maybe_reload()
    assert reloader.current is reloader.context  # not looked at yet
    now[0] += 0.2
    reloader.maybe_reload()
    assert reloader.current is not reloader.context
    reloaded = reloader.current
    now[0] += 10
    reloader.maybe_reload()  # nothing changed: no rebuild
    assert reloader.current is reloaded
