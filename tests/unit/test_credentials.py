"""Password sources: env, file (re-read on change), Secrets Manager, token encoding."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from exporter.config import load_settings
from exporter.credentials import (
    CredentialsError,
    build_credentials,
    decode_secret,
    encode_token,
)


def test_base64_alnum_matches_elasticache_derivation() -> None:
    # base64("ab?>") == "YWI/Pg==" -> strip "=", "+", "/" -> "YWIPg"
    assert encode_token("ab?>", "base64-alnum") == "YWIPg"
    assert encode_token("ab?>", "raw") == "ab?>"


@pytest.mark.parametrize(("secret", "password"), [
    ('{"password": "p@ss"}', "p@ss"), ("plain-token", "plain-token"), ('"quoted"', '"quoted"'),
    ("[1, 2]", "[1, 2]"),
])  # fmt: skip
def test_decode_secret(secret: str, password: str) -> None:
    assert decode_secret(secret) == password


def test_decode_secret_object_without_password() -> None:
    with pytest.raises(CredentialsError, match="password"):
        decode_secret('{"user": "x"}')


@pytest.mark.asyncio
async def test_password_file_reread_on_change(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("first\n")
    creds = build_credentials(load_settings({"REDIS_PASSWORD_FILE": str(path)}))
    assert creds is not None
    assert creds.get_credentials() == ("first",)
    path.write_text("second-longer\n")
    await creds.refresh()
    assert creds.get_credentials() == ("second-longer",)


def test_username_and_password() -> None:
    creds = build_credentials(load_settings({"REDIS_USERNAME": "app", "REDIS_PASSWORD": "pw"}))
    assert creds is not None and creds.get_credentials() == ("app", "pw")


def test_no_password_no_provider() -> None:
    assert build_credentials(load_settings({})) is None


class _SecretsHandler(BaseHTTPRequestHandler):
    secret = '{"password": "from-aws"}'
    requests: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append({"target": self.headers.get("X-Amz-Target"),
                                    "body": json.loads(body)})  # fmt: skip
        payload = json.dumps({"Name": "n", "SecretString": type(self).secret}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def secrets_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    _SecretsHandler.requests.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.asyncio
async def test_secrets_manager_with_endpoint_url(secrets_endpoint: str) -> None:
    settings = load_settings({
        "REDIS_PASSWORD_FROM_SECRETS": "true", "AWS_SECRET_NAME": "traffic-tacos/redis/auth-token",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": secrets_endpoint,
        "REDIS_AUTH_TOKEN_ENCODING": "base64-alnum",
    })  # fmt: skip
    creds = build_credentials(settings)
    assert creds is not None
    await creds.refresh()
    assert creds.get_credentials() == (encode_token("from-aws", "base64-alnum"),)
    assert _SecretsHandler.requests[0]["target"] == "secretsmanager.GetSecretValue"
    assert _SecretsHandler.requests[0]["body"]["SecretId"] == "traffic-tacos/redis/auth-token"


@pytest.mark.asyncio
async def test_secrets_manager_hanging_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blackholed endpoint: one short attempt, then an error (never the loop held up)."""
    import asyncio
    import socket
    import time

    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    try:
        settings = load_settings({
            "REDIS_PASSWORD_FROM_SECRETS": "true", "AWS_SECRET_NAME": "s",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{listener.getsockname()[1]}",
        })  # fmt: skip
        creds = build_credentials(settings)
        assert creds is not None
        started = time.monotonic()
        await creds.refresh()
        assert time.monotonic() - started < 8
        assert creds.error is not None and "Secrets Manager" in creds.error
        with pytest.raises(CredentialsError):
            creds.get_credentials()
        await asyncio.sleep(0)
    finally:
        listener.close()
