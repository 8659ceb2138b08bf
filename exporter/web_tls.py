"""TLS for the HTTP server: the SSLContext a web config asks for, and its reloading.

Certificates are re-read when their files change (checked at most every
RELOAD_CHECK_SECONDS, on a new handshake), so a rotated certificate is served
without a restart; a half-written rotation keeps the old one until it completes.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from exporter.config import ConfigError
from exporter.logs import get_logger
from exporter.web_config import ENV, TlsServerConfig

__all__ = ["RELOAD_CHECK_SECONDS", "TlsReloader", "build_ssl_context"]

#: How often, at most, a handshake checks whether the certificate files changed.
RELOAD_CHECK_SECONDS = 5.0

_VERIFY_MODES = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                 "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}  # fmt: skip

def build_ssl_context(tls: TlsServerConfig, config_path: Path) -> ssl.SSLContext:
    """A server context for ``tls``, reading the files now; raises :class:`ConfigError`."""

    def fail(key: str, problem: str) -> ConfigError:
        where = f"invalid {ENV} {str(config_path)!r}: tls_server_config.{key}"
        return ConfigError(f"{where}: {problem}")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version, ctx.maximum_version = tls.min_version, tls.max_version
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        if tls.cipher_suites:
            ctx.set_ciphers(":".join(tls.cipher_suites))
    except ssl.SSLError:
        raise fail("cipher_suites", "OpenSSL accepts none of these suites") from None
    try:
        if tls.curve is not None:
            ctx.set_ecdh_curve(tls.curve)
    except (ssl.SSLError, ValueError):
        raise fail("curve_preferences", "not available in this OpenSSL") from None
    ctx.set_alpn_protocols(["http/1.1"])

    def read(key: str, path: Path | None, inline: str | None) -> bytes:
        if path is None:
            return (inline or "").encode()
        try:
            return path.read_bytes()
        except OSError as exc:
            raise fail(key, f"cannot read {str(path)!r}: {exc.strerror}") from None

    cert = read("cert_file" if tls.cert_file else "cert", tls.cert_file, tls.cert)
    key_name = "key_file" if tls.key_file else "key"
    key = read(key_name, tls.key_file, tls.key)
    with _pem_files(cert, key) as (cert_path, key_path):
        try:
            ctx.load_cert_chain(cert_path, key_path, password=_refuse_password)
        except _EncryptedKeyError:
            raise fail(key_name, "encrypted private keys are not supported") from None
        except ssl.SSLError as exc:
            if not _is_certificate(cert):
                raise fail(key_name.replace("key", "cert"), "not a PEM certificate") from None
            reason = "does not match the certificate" if exc.reason == "KEY_VALUES_MISMATCH" \
                else "not a PEM private key"  # fmt: skip
            raise fail(key_name, reason) from None
    if tls.client_ca_file or tls.client_ca:
        ca_key = "client_ca_file" if tls.client_ca_file else "client_ca"
        ca = read(ca_key, tls.client_ca_file, tls.client_ca)
        try:
            ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError):
            raise fail(ca_key, "contains no PEM certificate") from None
    ctx.verify_mode = _VERIFY_MODES[tls.client_auth_type]
    return ctx


class _EncryptedKeyError(Exception):
    pass


def _refuse_password() -> str:
    """Passed to load_cert_chain so an encrypted key fails instead of prompting on a tty."""
    raise _EncryptedKeyError


def _is_certificate(pem: bytes) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _pem_files(*contents: bytes) -> Iterator[list[str]]:
    """Paths OpenSSL can open for in-memory PEM data (load_cert_chain takes paths only).

    Anonymous memory files on Linux, so an inline key never touches a disk; a private
    temporary directory elsewhere. Gone when the block exits.
    """
    use_memfd = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")
    with contextlib.ExitStack() as stack:
        paths: list[str] = []
        tmp: str | None = None
        for data in contents:
            try:
                if not use_memfd:
                    raise OSError
                fd = os.memfd_create("depwatch-tls", os.MFD_CLOEXEC)
                path = f"/proc/self/fd/{fd}"
            except OSError:  # not Linux, no /proc, or memfd refused (seccomp)
                tmp = tmp or stack.enter_context(tempfile.TemporaryDirectory())
                path = os.path.join(tmp, str(len(paths)))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            stack.callback(os.close, fd)
            with open(fd, "wb", closefd=False) as out:
                out.write(data)
            paths.append(path)
        yield paths


class TlsReloader:
    """The listening context; new handshakes pick up rotated certificate files.

    ``context.sni_callback`` runs on every ClientHello (with or without SNI). At most
    every ``check_every`` seconds it stats the files; when they changed it builds a
    fresh context and from then on moves each new connection onto it
    (``ssl_obj.context = ...`` swaps the certificate, key and client CA store while
    the versions, ciphers and verify mode stay those of the listening context, which
    the config fixes). A half-written rotation (cert and key not matching yet) keeps
    the previous certificate and is retried at the next check.
    """

    def __init__(self, tls: TlsServerConfig, config_path: Path, *,
                 check_every: float = RELOAD_CHECK_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._tls, self._path, self._every, self._clock = tls, config_path, check_every, clock
        self._stamp = self._stat()
        self.context = build_ssl_context(tls, config_path)
        self.current = self.context
        self.context.sni_callback = self._on_client_hello
        self._checked = clock()

    def _stat(self) -> tuple[object, ...]:
        stamps: list[object] = []
        for path in self._tls.watched_files():
            try:
                st = path.stat()
            except OSError as exc:
                stamps.append(exc.errno)
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        return tuple(stamps)

    def maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked < self._every:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        try:
            self.current = build_ssl_context(self._tls, self._path)
        except ConfigError as exc:  # keep serving the previous certificate
            get_logger().warning("cannot reload the TLS certificate; keeping the previous one",
                                 error=str(exc))  # fmt: skip
            return
        self._stamp = stamp
        get_logger().info("reloaded the TLS certificate", config=str(self._path))

    def _on_client_hello(self, ssl_obj: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None,
                         _ctx: ssl.SSLContext) -> None:  # fmt: skip
        try:
            self.maybe_reload()
            if self.current is not self.context:
                ssl_obj.context = self.current
        except Exception as exc:  # noqa: BLE001 - raising here aborts the handshake
            get_logger().warning("TLS certificate reload check failed", error=repr(exc))


