"""TLS, basic auth and response headers for the HTTP server (DEPWATCH_WEB_CONFIG_FILE).

exporter.web_config says what the operator asked for; this module enforces it with
an :class:`ssl.SSLContext` and aiohttp middlewares. Basic auth covers every path
except /healthz and /readyz (kubelet probes carry no credentials and those pages
reveal nothing); TLS and the configured headers cover everything.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import bcrypt
from aiohttp import hdrs, web

from exporter.config import Settings
from exporter.logs import get_logger
from exporter.web_config import RateLimit, WebConfig, load_web_config
from exporter.web_tls import RELOAD_CHECK_SECONDS, TlsReloader

__all__ = ["EXEMPT_PATHS", "BasicAuth", "WebSecurity", "basic_auth_middleware",
           "build_web_security", "client_sans_middleware",
           "headers_middleware", "load_web_security", "parse_basic_authorization",
           "rate_limit_middleware"]  # fmt: skip

#: Paths served without basic auth (never without TLS when TLS is configured).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
WWW_AUTHENTICATE = 'Basic realm="depwatch"'
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class WebSecurity:
    """What serve() needs: middlewares for the app and the context for TCPSite."""

    middlewares: list[web.Middleware] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None
    config: WebConfig | None = None


def load_web_security(settings: Settings, *,
                      reload_check: float = RELOAD_CHECK_SECONDS) -> WebSecurity:  # fmt: skip
    """Read DEPWATCH_WEB_CONFIG_FILE; nothing to enforce when it is unset.

    Raises :class:`ConfigError` (one line) for anything invalid or unreadable.
    """
    if not settings.web_config_file:
        return WebSecurity()
    return build_web_security(load_web_config(settings.web_config_file), reload_check=reload_check)


def build_web_security(config: WebConfig, *,
                       reload_check: float = RELOAD_CHECK_SECONDS) -> WebSecurity:  # fmt: skip
    ssl_context = None
    middlewares: list[web.Middleware] = []
    if config.headers:  # outermost, so 401/403/404/429/500 carry the headers too
        middlewares.append(headers_middleware(config.headers))
    if config.tls is not None:
        ssl_context = TlsReloader(config.tls, config.path, check_every=reload_check).context
        if config.tls.client_allowed_sans is not None:
            middlewares.append(client_sans_middleware(config.tls.client_allowed_sans))
    if config.rate_limit is not None:
        middlewares.append(rate_limit_middleware(config.rate_limit))
    if config.users:
        middlewares.append(basic_auth_middleware(BasicAuth(config.users)))
    tls = config.tls
    get_logger().info("web config loaded", config=str(config.path), tls=tls is not None,
                      client_auth=tls.client_auth_type if tls else None,
                      basic_auth_users=len(config.users), headers=sorted(config.headers),
                      rate_limit=config.rate_limit is not None)  # fmt: skip
    return WebSecurity(middlewares=middlewares, ssl_context=ssl_context, config=config)


# ----------------------------------------------------------------- basic auth


class BasicAuth:
    """bcrypt verification with a cache that cannot be used to bypass it.

    CVE-2022-46146 (exporter-toolkit): a cache lookup that did not bind the result
    to the exact user, hash and password let a wrong password in. Here a cache entry
    is keyed on (user, that user's hash, HMAC-SHA256 of the supplied password under a
    per-process random key), only successes are cached, the cache is bounded (LRU),
    and it never holds a plaintext password. Unknown users are verified against a
    dummy hash of the same cost as the most expensive configured one, so a response
    time does not tell which users exist.
    """

    def __init__(self, users: Mapping[str, bytes], *, cache_size: int = 256) -> None:
        self._users = dict(users)
        cost = max((int(h[4:6]) for h in self._users.values()), default=10)
        self._dummy = bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(rounds=cost))
        self._hmac_key = secrets.token_bytes(32)
        self._cache: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()
        self._cache_size = cache_size
        # bcrypt is CPU-bound by design: one verification at a time, off the event loop.
        self._slot = asyncio.Semaphore(1)

    async def check(self, user: str, password: bytes) -> bool:
        hashed = self._users.get(user)
        target = self._dummy if hashed is None else hashed
        digest = hmac.new(self._hmac_key, password, hashlib.sha256).digest()
        key = (user, target, digest)
        if hashed is not None and key in self._cache:
            self._cache.move_to_end(key)
            return True
        async with self._slot:
            ok = await asyncio.to_thread(_checkpw, password, target)
        if not ok or hashed is None:
            return False
        self._cache[key] = None
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return True


def _checkpw(password: bytes, hashed: bytes) -> bool:
    # bcrypt only ever uses the first 72 bytes; bcrypt>=5 raises instead of truncating.
    try:
        return bcrypt.checkpw(password[:72], hashed)
    except ValueError:
        return False


def parse_basic_authorization(header: str | None) -> tuple[str, bytes] | None:
    """``Authorization: Basic base64(user:password)`` -> (user, password), else None."""
    scheme, _, param = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(param.strip(), validate=True).partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (binascii.Error, ValueError):
        return None


def _exempt(request: web.Request) -> bool:
    """True when the router sent the request to /healthz or /readyz (not a look-alike)."""
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in EXEMPT_PATHS


# ----------------------------------------------------------------- middlewares


def basic_auth_middleware(auth: BasicAuth) -> web.Middleware:
    @web.middleware
    async def basic_auth(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not _exempt(request):
            creds = parse_basic_authorization(request.headers.get(hdrs.AUTHORIZATION))
            if creds is None or not await auth.check(*creds):
                return web.Response(status=401, text="401 Unauthorized",
                                    headers={hdrs.WWW_AUTHENTICATE: WWW_AUTHENTICATE})  # fmt: skip
        return await handler(request)

    return basic_auth


def headers_middleware(headers: Mapping[str, str]) -> web.Middleware:
    """Set the configured headers on every response, error responses included."""
    headers = dict(headers)

    @web.middleware
    async def set_headers(request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        except Exception:  # noqa: BLE001 - aiohttp's own 500 would lack the headers
            get_logger().exception("unhandled error serving request", path=request.path)
            return web.Response(status=500, text="500 Internal Server Error", headers=headers)
        if not response.prepared:
            response.headers.update(headers)
        return response

    return set_headers


def client_sans_middleware(allowed: tuple[str, ...]) -> web.Middleware:
    """client_allowed_sans: 403 unless the verified client certificate has a listed SAN.

    Python's ssl has no hook to reject the handshake itself, so the check runs on each
    request of the connection instead (the toolkit fails the handshake).
    """
    allowed_set = frozenset(allowed)

    @web.middleware
    async def check_sans(request: web.Request, handler: _Handler) -> web.StreamResponse:
        ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
        cert = ssl_obj.getpeercert() if ssl_obj is not None else None
        if not cert or allowed_set.isdisjoint(_sans(cert)):
            return web.Response(status=403, text="403 Forbidden: client certificate not allowed")
        return await handler(request)

    return check_sans


def _sans(cert: Mapping[str, Any]) -> Iterator[str]:
    """The SAN values Go matches: DNS names, e-mails, IPs and URIs."""
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "IP Address":
            try:  # Go compares net.IP.String(): the compressed form
                yield str(ipaddress.ip_address(value.strip()))
            except ValueError:
                yield value
        elif kind in ("DNS", "email", "URI"):
            yield value


def rate_limit_middleware(
    limit: RateLimit, *, clock: Callable[[], float] = time.monotonic
) -> web.Middleware:
    """rate_limit: a token bucket over all requests; 429 when empty.

    /healthz and /readyz are not counted nor limited: a busy scraper must not get a
    pod restarted by failing its kubelet probes.
    """
    state = {"tokens": float(limit.burst), "at": clock()}

    @web.middleware
    async def rate_limit(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not _exempt(request):
            now = clock()
            tokens = min(limit.burst, state["tokens"] + (now - state["at"]) / limit.interval)
            state["at"] = now
            if tokens < 1:
                state["tokens"] = tokens
                return web.Response(status=429, text="429 Too Many Requests")
            state["tokens"] = tokens - 1
        return await handler(request)

    return rate_limit
