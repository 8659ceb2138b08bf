"""Where the Redis password comes from: env, a file (re-read on change), AWS Secrets Manager.

A :class:`PasswordCredentials` is handed to redis-py as its ``credential_provider`` so
every (re)connect uses the current token: a rotated file is picked up without restart.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from redis.credentials import CredentialProvider

from exporter.config import Settings

__all__ = [
    "CredentialsError",
    "PasswordCredentials",
    "SecretFetcher",
    "build_credentials",
    "decode_secret",
    "encode_token",
]


class CredentialsError(Exception):
    """The password could not be obtained; the message never contains it."""


def encode_token(secret: str, encoding: str) -> str:
    """Apply REDIS_AUTH_TOKEN_ENCODING (``base64-alnum`` is the ElastiCache derivation)."""
    if encoding == "base64-alnum":
        b64 = base64.b64encode(secret.encode()).decode()
        return b64.replace("=", "").replace("+", "").replace("/", "")
    return secret


def decode_secret(secret_string: str) -> str:
    """A Secrets Manager value: a JSON object with a ``password`` key, or the raw string."""
    try:
        document = json.loads(secret_string)
    except ValueError:
        return secret_string
    if isinstance(document, dict):
        password = document.get("password")
        if not isinstance(password, str):
            raise CredentialsError("the secret is a JSON object without a string 'password' key")
        return password
    return secret_string


SecretFetcher = Callable[[], str]


def _aws_fetcher(settings: Settings) -> SecretFetcher:
    """GetSecretValue through boto3 (an optional extra, imported only when used)."""

    def fetch() -> str:
        try:
            import boto3  # heavy: only imported with REDIS_PASSWORD_FROM_SECRETS
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise CredentialsError(
                "REDIS_PASSWORD_FROM_SECRETS needs boto3: pip install 'depwatch[aws]'"
            ) from None
        from botocore.config import Config

        try:
            client = boto3.client(
                "secretsmanager",
                region_name=settings.aws_region,
                endpoint_url=settings.aws_endpoint_url,
                # one short attempt: a refresh must never hold up the probe loop for long
                config=Config(connect_timeout=2, read_timeout=2,
                              retries={"max_attempts": 1, "mode": "standard"}),
            )
            response = client.get_secret_value(SecretId=settings.aws_secret_name)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise CredentialsError(f"Secrets Manager GetSecretValue failed: {code}") from None
        except BotoCoreError as exc:
            raise CredentialsError(
                f"Secrets Manager GetSecretValue failed: {type(exc).__name__}"
            ) from None
        secret = response.get("SecretString")
        if secret is None:
            raise CredentialsError("the secret has no SecretString")
        return decode_secret(secret)

    return fetch


@dataclass
class _FileCache:
    key: tuple[int, int, int] | None = None
    value: str | None = None


class PasswordCredentials(CredentialProvider):
    """Username and current password for each new connection.

    ``refresh()`` (async, may do network I/O for Secrets Manager) is called by the
    scheduler before each cycle; ``get_credentials()`` only reads what it cached, so
    redis-py's connect path never blocks the event loop.
    """

    def __init__(
        self,
        *,
        username: str | None,
        encoding: str,
        static: str | None = None,
        path: str | None = None,
        fetch: SecretFetcher | None = None,
        refetch_after: float = 300.0,
        clock: Callable[[], float] = lambda: asyncio.get_running_loop().time(),
    ) -> None:
        self._username = username
        self._encoding = encoding
        self._static = static
        self._path = path
        self._fetch = fetch
        self._file = _FileCache()
        self._fetched: str | None = None
        self._fetched_at: float | None = None
        self._refetch_after = refetch_after
        self._clock = clock
        self._fetching: asyncio.Task[str] | None = None
        self.error: str | None = None

    @property
    def has_password(self) -> bool:
        return any(x is not None for x in (self._static, self._path, self._fetch))

    def _read_file(self) -> str | None:
        assert self._path is not None
        try:
            stat = os.stat(self._path)
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if key != self._file.key:
                with open(self._path, encoding="utf-8") as handle:
                    text = handle.read()
                # a trailing newline is not part of the password
                self._file = _FileCache(key, text.removesuffix("\n").removesuffix("\r"))
            self.error = None
        except (OSError, UnicodeDecodeError) as exc:
            self.error = f"REDIS_PASSWORD_FILE unreadable: {type(exc).__name__}"
        return self._file.value

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the file when it changed; re-fetch the secret when stale or forced."""
        if self._path is not None:
            self._read_file()
        if self._fetch is not None:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self._refetch_after
            if (force or stale) and self._fetching is None:
                self._fetching = asyncio.create_task(asyncio.to_thread(self._fetch))
                self._fetched_at = now
            if self._fetching is not None:
                await self._collect_fetch()

    async def _collect_fetch(self) -> None:
        """Wait a bounded time for the in-flight fetch; a slow one finishes in a later cycle
        (the first wait is longer: no password is known yet)."""
        assert self._fetching is not None
        await asyncio.wait({self._fetching}, timeout=10.0 if self._fetched is None else 0.5)
        if not self._fetching.done():
            return
        task, self._fetching = self._fetching, None
        try:
            self._fetched = task.result()
            self.error = None
        except CredentialsError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - boto3 may raise anything; keep the old one
            self.error = f"Secrets Manager fetch failed: {type(exc).__name__}"

    def password(self) -> str | None:
        if self._static is not None:
            raw: str | None = self._static
        elif self._path is not None:
            raw = self._read_file()
        else:
            raw = self._fetched
        return None if raw is None else encode_token(raw, self._encoding)

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = self.password()
        if password is None:
            raise CredentialsError(self.error or "no Redis password available yet")
        if self._username:
            return (self._username, password)
        return (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()


def build_credentials(
    settings: Settings, *, fetch: SecretFetcher | None = None
) -> PasswordCredentials | None:
    """The credential provider for ``settings``, or None when Redis needs no AUTH."""
    if settings.redis_password_from_secrets:
        fetch = fetch or _aws_fetcher(settings)
    if not (settings.redis_password is not None or settings.redis_password_file or fetch):
        if settings.redis_username:
            # ACL user without password is not a thing redis accepts; AUTH would fail
            return PasswordCredentials(
                username=settings.redis_username, encoding="raw", static=""
            )
        return None
    return PasswordCredentials(
        username=settings.redis_username,
        encoding=settings.redis_auth_token_encoding,
        static=settings.redis_password,
        path=settings.redis_password_file,
        fetch=fetch,
    )
