"""Parse DEPWATCH_WEB_CONFIG_FILE: the Prometheus exporter-toolkit web-config format.

Pure parsing and validation, no sockets: the result says *what* to enforce and
exporter.web_security builds the ssl context and aiohttp middlewares from it.
Every key the toolkit defines is either honoured or refused with a one-line
:class:`ConfigError` naming the key; nothing a user wrote is silently dropped.
Error messages never contain a password hash, an inline key or YAML source text.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.config import ConfigError
from exporter.values import parse_duration

__all__ = ["ALLOWED_HEADERS", "CIPHER_SUITES", "CURVES", "RateLimit", "TlsServerConfig",
           "WebConfig", "load_web_config", "parse_web_config"]  # fmt: skip

ENV = "DEPWATCH_WEB_CONFIG_FILE"

#: Headers the toolkit lets an operator set, with the only values it accepts
#: (empty: any value). Names are case-sensitive, as in the toolkit.
ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

#: Go's tls.CipherSuites() names (TLS <= 1.2) -> OpenSSL names. Go cannot configure
#: TLS 1.3 suites either; those names are refused instead of being ignored.
CIPHER_SUITES: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
_TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

#: Go curve names -> OpenSSL group names.
CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}

_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_OLD_VERSIONS = ("TLS10", "TLS11")

#: client_auth_type values Python's ssl can enforce exactly.
_CLIENT_AUTH = ("NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
#: ...and the ones it cannot: OpenSSL through Python has no verify callback, so it
#: cannot accept a client certificate it is unable to verify.
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

_TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
             "client_ca_file", "client_allowed_sans", "min_version", "max_version",
             "cipher_suites", "prefer_server_cipher_suites", "curve_preferences"}  # fmt: skip
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True, slots=True)
class TlsServerConfig:
    """``tls_server_config``; file paths are already resolved against the config dir."""

    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    client_ca_file: Path | None = None
    client_ca: str | None = field(default=None, repr=False)
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    #: OpenSSL names, in preference order; empty: OpenSSL's defaults
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    #: the single OpenSSL group to use for (EC)DHE, or None for the defaults
    curve: str | None = None

    def watched_files(self) -> tuple[Path, ...]:
        """Files whose change means new handshakes must use a rebuilt context."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate_limit``: a token bucket refilled one token per ``interval`` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True, slots=True)
class WebConfig:
    path: Path
    tls: TlsServerConfig | None = None
    #: user -> bcrypt hash
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None


class _Invalid(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (Go's yaml.UnmarshalStrict does too)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise _Invalid(str(key), f"duplicate key (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate the file; raises :class:`ConfigError` (one line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"invalid {ENV} {str(path)!r}: cannot read the file: {reason}") from None
    return parse_web_config(text, path)


def parse_web_config(text: str, path: Path) -> WebConfig:
    """Validate the YAML ``text`` of the file at ``path`` (used to resolve relative paths)."""
    try:
        return _parse(text, path)
    except _Invalid as exc:
        raise ConfigError(f"invalid {ENV} {str(path)!r}: {exc}") from None


def _parse(text: str, path: Path) -> WebConfig:
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # Only the position and the problem: the source snippet may hold a secret.
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = exc.problem or exc.context or "syntax error"
        raise _Invalid("YAML", f"{problem} at {where}") from None
    except yaml.YAMLError:
        raise _Invalid("YAML", "not a valid YAML document") from None
    if doc is None:
        doc = {}
    top = _mapping(doc, "", {"tls_server_config", "http_server_config", "basic_auth_users",
                             "rate_limit"})  # fmt: skip
    http = _mapping(top.get("http_server_config"), "http_server_config", {"http2", "headers"})
    if _bool(http, "http_server_config.http2", "http2", default=False):
        raise _Invalid("http_server_config.http2", "depwatch's server (aiohttp) speaks HTTP/1.1 "
                       "only; remove the key or set it to false")  # fmt: skip
    return WebConfig(
        path=path,
        tls=_tls(top.get("tls_server_config"), path.parent),
        users=_users(top.get("basic_auth_users")),
        headers=_headers(http.get("headers")),
        rate_limit=_rate_limit(top.get("rate_limit")),
    )


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(where or "(top level)", "must be a mapping")
    for key in value:
        if key not in allowed:
            raise _Invalid(f"{where}.{key}" if where else str(key),
                           "unknown key; accepted: " + ", ".join(sorted(allowed)))  # fmt: skip
    return value


def _str(section: dict[str, Any], where: str, key: str) -> str | None:
    """A string value; null and "" mean unset (Go's zero value)."""
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid(where, "must be a string")
    return value


def _bool(section: dict[str, Any], where: str, key: str, *, default: bool) -> bool:
    value = section.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _Invalid(where, "must be true or false")
    return value


def _str_list(section: dict[str, Any], where: str, key: str) -> tuple[str, ...] | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid(where, "must be a list of non-empty strings")
    return tuple(value)


def _tls(value: Any, base: Path) -> TlsServerConfig | None:
    prefix = "tls_server_config"
    s = _mapping(value, prefix, _TLS_KEYS)
    if all(v is None or v == "" for v in s.values()):
        return None

    def text(key: str) -> str | None:
        return _str(s, f"{prefix}.{key}", key)

    def file(key: str) -> Path | None:
        name = text(key)
        return None if name is None else base / Path(name).expanduser()

    for inline in ("cert", "key", "client_ca"):
        path_key = f"{inline}_file"
        if text(inline) and text(path_key):
            raise _Invalid(f"{prefix}.{inline}", f"set either {inline} or {path_key}, not both")
    if not (text("cert") or text("cert_file")):
        raise _Invalid(f"{prefix}.cert_file", "missing: TLS needs cert_file (or cert) and key_file")
    if not (text("key") or text("key_file")):
        raise _Invalid(f"{prefix}.key_file", "missing: TLS needs key_file (or key) with the cert")

    auth = text("client_auth_type") or "NoClientCert"
    where = f"{prefix}.client_auth_type"
    if auth in _UNVERIFIED_CLIENT_AUTH:
        raise _Invalid(where, f"{auth} is not supported: Python's ssl cannot accept a client "
                       "certificate it does not verify; use RequireAndVerifyClientCert "
                       "(or VerifyClientCertIfGiven) with client_ca_file")  # fmt: skip
    if auth not in _CLIENT_AUTH:
        raise _Invalid(where, "one of " + ", ".join(_CLIENT_AUTH))
    has_ca = bool(text("client_ca") or text("client_ca_file"))
    if has_ca and auth == "NoClientCert":
        raise _Invalid(f"{prefix}.client_ca_file", "a client CA is set but client_auth_type "
                       "is NoClientCert; use RequireAndVerifyClientCert")  # fmt: skip
    if not has_ca and auth != "NoClientCert":
        raise _Invalid(f"{prefix}.client_ca_file", f"{auth} needs client_ca_file (or "
                       "client_ca): system CAs are not trusted for client certs")  # fmt: skip
    sans = _str_list(s, f"{prefix}.client_allowed_sans", "client_allowed_sans")
    if sans is not None and auth != "RequireAndVerifyClientCert":
        raise _Invalid(f"{prefix}.client_allowed_sans",
                       "requires client_auth_type: RequireAndVerifyClientCert")

    min_v = _version(s, prefix, "min_version", ssl.TLSVersion.TLSv1_2)
    max_v = _version(s, prefix, "max_version", ssl.TLSVersion.TLSv1_3)
    if min_v > max_v:
        raise _Invalid(f"{prefix}.min_version", "is higher than max_version")
    prefer = _bool(s, f"{prefix}.prefer_server_cipher_suites", "prefer_server_cipher_suites",
                   default=True)  # fmt: skip
    return TlsServerConfig(
        cert_file=file("cert_file"), key_file=file("key_file"), cert=text("cert"),
        key=text("key"), client_ca_file=file("client_ca_file"), client_ca=text("client_ca"),
        client_auth_type=auth, client_allowed_sans=sans, min_version=min_v, max_version=max_v,
        cipher_suites=_ciphers(s, prefix), prefer_server_cipher_suites=prefer,
        curve=_curve(s, prefix),
    )  # fmt: skip


def _version(s: dict[str, Any], prefix: str, key: str, default: ssl.TLSVersion) -> ssl.TLSVersion:
    name = _str(s, f"{prefix}.{key}", key)
    if name is None:
        return default
    if name in _OLD_VERSIONS:
        raise _Invalid(f"{prefix}.{key}", f"{name} cannot be negotiated by Python's ssl "
                       "with OpenSSL 3 (no cipher at its security level); use TLS12")  # fmt: skip
    if name not in _VERSIONS:
        raise _Invalid(f"{prefix}.{key}", "one of TLS12, TLS13")
    return _VERSIONS[name]


def _ciphers(s: dict[str, Any], prefix: str) -> tuple[str, ...]:
    where = f"{prefix}.cipher_suites"
    names = _str_list(s, where, "cipher_suites") or ()
    for name in names:
        if name in _TLS13_SUITES:
            raise _Invalid(where, f"{name} is a TLS 1.3 suite; those are not configurable "
                           "(in Go either): list TLS 1.2 suites only")  # fmt: skip
        if name not in CIPHER_SUITES:
            raise _Invalid(where, f"unknown cipher suite {name!r} (Go's tls.CipherSuites names)")
    return tuple(CIPHER_SUITES[n] for n in names)


def _curve(s: dict[str, Any], prefix: str) -> str | None:
    where = f"{prefix}.curve_preferences"
    names = _str_list(s, where, "curve_preferences")
    if not names:
        return None
    for name in names:
        if name not in CURVES:
            raise _Invalid(where, f"unknown curve {name!r}; one of " + ", ".join(CURVES))
    if len(names) > 1:
        raise _Invalid(where, "Python's ssl can restrict key exchange to one curve but "
                       "cannot order several; list exactly one")  # fmt: skip
    if ssl.OPENSSL_VERSION_INFO[0] < 3:
        raise _Invalid(where, "needs OpenSSL 3 (this Python uses " + ssl.OPENSSL_VERSION + ")")
    return CURVES[names[0]]


def _users(value: Any) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid("basic_auth_users", "must be a mapping of user name to bcrypt hash")
    users: dict[str, bytes] = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user:
            raise _Invalid("basic_auth_users", f"user name {user!r} is a YAML "
                           f"{type(user).__name__}, not a non-empty string: quote it")  # fmt: skip
        if ":" in user:
            raise _Invalid(f"basic_auth_users.{user}", "a user name cannot contain ':'")
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            raise _Invalid(f"basic_auth_users.{user}", "not a bcrypt hash ($2a$, $2b$ or $2y$, "
                           "cost 04-31, 53 characters of salt and hash)")  # fmt: skip
        users[user] = hashed.encode("ascii")
    return users


def _headers(value: Any) -> dict[str, str]:
    where = "http_server_config.headers"
    headers = _mapping(value, where, set(ALLOWED_HEADERS))
    out: dict[str, str] = {}
    for name, header_value in headers.items():
        if header_value is None or header_value == "":
            continue  # "Unset if blank"
        if not isinstance(header_value, str) or "\r" in header_value or "\n" in header_value:
            raise _Invalid(f"{where}.{name}", "must be a single-line string")
        allowed = ALLOWED_HEADERS[name]
        if allowed and header_value not in allowed:
            raise _Invalid(f"{where}.{name}", "must be one of " + ", ".join(allowed))
        out[name] = header_value
    return out


def _rate_limit(value: Any) -> RateLimit | None:
    s = _mapping(value, "rate_limit", {"interval", "burst"})
    if not s:
        return None
    interval = s.get("interval", 0)
    if not isinstance(interval, bool) and interval in (0, "0", None):
        if s.get("burst") not in (None, 0):
            raise _Invalid("rate_limit.burst", "is set but rate_limit.interval is 0 (disabled)")
        return None
    try:
        seconds = parse_duration(interval) if isinstance(interval, str) else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise _Invalid("rate_limit.interval", "a Go duration such as 100ms or 1s (0 disables)")
    burst = s.get("burst")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise _Invalid("rate_limit.burst", "a positive integer (requests allowed at once)")
    return RateLimit(interval=seconds, burst=burst)
