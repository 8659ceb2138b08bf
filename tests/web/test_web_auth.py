"""Basic auth (incl. the CVE-2022-46146 regression), response headers and rate limiting."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest

from exporter import web_security
from exporter.config import Settings
from exporter.web_security import BasicAuth, load_web_security, parse_basic_authorization

WriteConfig = Callable[[str], Path]
PROTECTED = ("/metrics", "/status", "/", "/no-such-page")
OPEN = ("/healthz", "/readyz")
HEADERS = {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
           "Strict-Transport-Security": "max-age=63072000",
           "Content-Security-Policy": "default-src 'none'", "X-XSS-Protection": "0"}  # fmt: skip


def users_yaml(hashes: dict[str, str]) -> str:
    return "basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in hashes.items())


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def get(url: str, auth: tuple[str, str] | None = None,
              headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:  # fmt: skip
    headers = {**(basic(*auth) if auth else {}), **(headers or {})}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        await resp.read()
        return resp


@pytest.mark.asyncio
async def test_basic_auth_on_every_path_but_probes(serve: Any, write_config: WriteConfig,
                                                   hashes: dict[str, str]) -> None:  # fmt: skip
    path = write_config(users_yaml(hashes))
    async with serve(load_web_security(Settings(web_config_file=str(path)))) as base:
        for p in PROTECTED:
            resp = await get(base + p)
            assert resp.status == 401, p
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="depwatch"'
            assert (await get(base + p, ("alice", "wrong"))).status == 401
            assert (await get(base + p, ("mallory", "alice-secret"))).status == 401
            assert (await get(base + p, ("bob", "alice-secret"))).status == 401
        for p in ("/metrics", "/status", "/"):
            assert (await get(base + p, ("alice", "alice-secret"))).status == 200
            assert (await get(base + p, ("bob", "bob-secret"))).status == 200
        assert (await get(base + "/no-such-page", ("alice", "alice-secret"))).status == 404
        for p in OPEN:
            assert (await get(base + p)).status == 200, p
        # look-alikes of the open paths are not open
        for p in ("/healthz/", "/healthz/../metrics", "/HEALTHZ", "/readyz?x=/metrics"):
            status = (await get(base + p)).status
            assert status == (200 if p.startswith("/readyz?") else 401), p
        # a malformed Authorization header is a 401, not a 500
        for header in ("Basic", "Basic !!!", "Bearer abc", "Basic " + base64.b64encode(b"nocolon")
                       .decode(), "Basic " + base64.b64encode(b"\xff:x").decode()):  # fmt: skip
            resp = await get(base + "/metrics", headers={"Authorization": header})
            assert resp.status == 401, header


@pytest.mark.asyncio
async def test_tls_and_basic_auth_together(serve: Any, pki: Any, write_config: WriteConfig,
                                           hashes: dict[str, str]) -> None:  # fmt: skip
    pki.server_files()
    path = write_config("tls_server_config: {cert_file: server.pem, key_file: server.key}\n"
                        + users_yaml(hashes))  # fmt: skip
    async with serve(load_web_security(Settings(web_config_file=str(path)))) as base:
        ctx = pki.client_context()
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/healthz", ssl=ctx) as resp:
                assert resp.status == 200
            async with session.get(base + "/metrics", ssl=ctx) as resp:
                assert resp.status == 401
            auth = basic("alice", "alice-secret")
            async with session.get(base + "/metrics", ssl=ctx, headers=auth) as resp:
                assert resp.status == 200


@pytest.mark.asyncio
async def test_headers_on_every_response(serve: Any, write_config: WriteConfig,
                                         hashes: dict[str, str]) -> None:  # fmt: skip
    lines = "".join(f"    {k}: \"{v}\"\n" for k, v in HEADERS.items())
    path = write_config(f"http_server_config:\n  headers:\n{lines}" + users_yaml(hashes))
    alice = ("alice", "alice-secret")
    async with serve(load_web_security(Settings(web_config_file=str(path)))) as base:
        for url, auth, status in ((base + "/metrics", alice, 200), (base + "/healthz", None, 200),
                                  (base + "/metrics", None, 401), (base + "/nope", alice, 404),
                                  (base + "/boom", alice, 500)):  # fmt: skip
            resp = await get(url, auth)
            assert resp.status == status, url
            for name, value in HEADERS.items():
                assert resp.headers.get(name) == value, (url, name)


@pytest.mark.asyncio
async def test_rate_limit(serve: Any, write_config: WriteConfig) -> None:
    path = write_config("rate_limit: {interval: 1h, burst: 2}\n")
    async with serve(load_web_security(Settings(web_config_file=str(path)))) as base:
        assert [(await get(base + "/metrics")).status for _ in range(3)] == [200, 200, 429]
        assert (await get(base + "/healthz")).status == 200  # probes are never limited


# ------------------------------------------------- BasicAuth and CVE-2022-46146


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record the hash every bcrypt verification runs against."""
    calls: list[bytes] = []
    real = web_security._checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(web_security, "_checkpw", spy)
    return calls


@pytest.mark.asyncio
async def test_cache_never_lets_a_different_password_in(
    monkeypatch: pytest.MonkeyPatch, hashes: dict[str, str]
) -> None:
    auth = BasicAuth({u: h.encode() for u, h in hashes.items()})
    calls = _counting(monkeypatch)
    assert await auth.check("alice", b"alice-secret")
    assert await auth.check("alice", b"alice-secret")
    assert len(calls) == 1  # the second success came from the cache
    # a cached success for alice must not admit another password...
    assert not await auth.check("alice", b"alice-secret2")
    assert not await auth.check("alice", b"alice-secre")
    assert not await auth.check("alice", b"")
    assert not await auth.check("alice", hashes["alice"].encode())  # the hash is not a password
    # ...nor another user with alice's password, nor alice's name with different case
    assert not await auth.check("bob", b"alice-secret")
    assert not await auth.check("Alice", b"alice-secret")
    assert not await auth.check("alice ", b"alice-secret")
    # failures are never cached: each one costs a bcrypt verification
    before = len(calls)
    assert not await auth.check("alice", b"wrong")
    assert not await auth.check("alice", b"wrong")
    assert len(calls) == before + 2


@pytest.mark.asyncio
async def test_cve_2022_46146_cache_key_confusion(hashes: dict[str, str]) -> None:
    """The toolkit keyed its cache on user+hash+password run together, so an attacker
    who knew alice's hash could log in as an unknown user named alice+hash+X (poisoning
    the cache through the dummy-hash path) and then as alice with password X+... .
    Every split of that concatenation must fail here."""
    alice_hash = hashes["alice"]
    auth = BasicAuth({"alice": alice_hash.encode()})
    assert await auth.check("alice", b"alice-secret")  # a cached entry exists
    forged_user = "alice" + alice_hash + "x"
    assert not await auth.check(forged_user, b"alice-secret")
    assert not await auth.check(forged_user, b"")
    assert not await auth.check("alice", ("x" + alice_hash).encode())
    assert not await auth.check("alice", alice_hash.encode() + b"alice-secret")
    assert not await auth.check("alice" + alice_hash, b"alice-secret")
    # users that fail to authenticate never enter the cache
    assert len(auth._cache) == 1


@pytest.mark.asyncio
async def test_cached_entry_of_one_user_does_not_authorize_another() -> None:
    same = bcrypt.hashpw(b"shared", bcrypt.gensalt(rounds=4))
    other = bcrypt.hashpw(b"different", bcrypt.gensalt(rounds=4))
    auth = BasicAuth({"u1": same, "u2": other})
    assert await auth.check("u1", b"shared")
    assert not await auth.check("u2", b"shared")
    assert await auth.check("u2", b"different")


@pytest.mark.asyncio
async def test_unknown_users_cost_a_bcrypt_check_of_the_same_cost(
    monkeypatch: pytest.MonkeyPatch, hashes: dict[str, str]
) -> None:
    auth = BasicAuth({u: h.encode() for u, h in hashes.items()})
    calls = _counting(monkeypatch)
    assert not await auth.check("nobody", b"alice-secret")
    assert not await auth.check("nobody", b"alice-secret")
    assert len(calls) == 2  # every attempt, like a wrong password for a real user
    assert calls[0] not in {h.encode() for h in hashes.values()}
    assert calls[0][4:7] == hashes["alice"].encode()[4:7] == b"04$"  # same cost
    assert calls[0] == calls[1]  # one fixed dummy hash


@pytest.mark.asyncio
async def test_cache_is_bounded_and_holds_no_plaintext() -> None:
    users = {f"user{i}": bcrypt.hashpw(f"pw{i}".encode(), bcrypt.gensalt(rounds=4))
             for i in range(5)}  # fmt: skip
    auth = BasicAuth(users, cache_size=3)
    for i in range(5):
        assert await auth.check(f"user{i}", f"pw{i}".encode())
    assert len(auth._cache) == 3
    assert not any(f"pw{i}".encode() in part for key in auth._cache for part in key[1:]
                   for i in range(5))  # fmt: skip
    assert await auth.check("user0", b"pw0")  # evicted, verified again


@pytest.mark.asyncio
async def test_overlong_password_does_not_crash(hashes: dict[str, str]) -> None:
    auth = BasicAuth({"alice": hashes["alice"].encode()})
    assert not await auth.check("alice", b"x" * 500)


@pytest.mark.parametrize(("header", "expected"), [
    ("Basic " + base64.b64encode(b"alice:pw:with:colons").decode(), ("alice", b"pw:with:colons")),
    ("basic " + base64.b64encode(b"alice:").decode(), ("alice", b"")),
    ("Basic " + base64.b64encode(b"\xc3\xa9:pw").decode(), ("\u00e9", b"pw")),
    (None, None), ("", None), ("Basic", None), ("Basic ???", None), ("Digest abc", None),
    ("Basic " + base64.b64encode(b"no-colon").decode(), None),
])  # fmt: skip
def test_parse_basic_authorization(header: str | None,
                                   expected: tuple[str, bytes] | None) -> None:  # fmt: skip
    assert parse_basic_authorization(header) == expected
