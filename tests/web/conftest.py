"""Fixtures for the web-config tests: a trustme PKI, bcrypt hashes and a live server."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import pytest_asyncio
import trustme
from aiohttp import web

from exporter.web_security import WebSecurity

#: cost 4 keeps every bcrypt check around a millisecond
PASSWORDS = {"alice": b"alice-secret", "bob": b"bob-secret"}


@pytest.fixture(scope="session")
def hashes() -> dict[str, str]:
    return {u: bcrypt.hashpw(p, bcrypt.gensalt(rounds=4)).decode() for u, p in PASSWORDS.items()}


@dataclass
class Pki:
    ca: trustme.CA
    other_ca: trustme.CA
    dir: Path

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    def server_files(self, name: str = "server") -> tuple[Path, Path]:
        """Issue a fresh server cert (localhost, 127.0.0.1) into ``name``.pem/.key."""
        return self.write(self.ca.issue_cert("localhost", "127.0.0.1"), name)

    @staticmethod
    def write_to(leaf: trustme.LeafCert, cert: Path, key: Path) -> tuple[Path, Path]:
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    def write(self, leaf: trustme.LeafCert, name: str) -> tuple[Path, Path]:
        return self.write_to(leaf, self.dir / f"{name}.pem", self.dir / f"{name}.key")

    def client_context(self, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if client is not None:
            client.configure_cert(ctx)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA(organization_name="depwatch web test CA")
    pki = Pki(ca=ca, other_ca=trustme.CA(organization_name="unrelated CA"), dir=tmp_path)
    ca.cert_pem.write_to_path(str(pki.ca_file))
    return pki


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "web-config.yml"
        path.write_text(text)
        return path

    return write


def _app(security: WebSecurity) -> web.Application:
    """The endpoint layout of exporter.app, with trivial handlers."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text=f"ok {request.path}\n")

    async def boom(_: web.Request) -> web.Response:
        raise RuntimeError("handler bug")

    app = web.Application(middlewares=security.middlewares)
    for path in ("/metrics", "/healthz", "/readyz", "/status", "/"):
        app.router.add_get(path, ok)
    app.router.add_get("/boom", boom)
    return app


Serve = Callable[[WebSecurity], AbstractAsyncContextManager[str]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    """``async with serve(security) as base_url:`` runs the app on 127.0.0.1:<free port>."""

    @asynccontextmanager
    async def run(security: WebSecurity) -> AsyncIterator[str]:
        runner = web.AppRunner(_app(security), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=security.ssl_context)
            await site.start()
            port = runner.addresses[0][1]
            scheme = "https" if security.ssl_context else "http"
            yield f"{scheme}://127.0.0.1:{port}"
        finally:
            await runner.cleanup()

    yield run
