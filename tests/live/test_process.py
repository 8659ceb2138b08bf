"""depwatch as a real process: SIGTERM/SIGINT with blackholed targets, secrets in output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from support.redis_servers import (
    REDIS_PASSWORD,
    RedisServer,
    ThreadedResetProxy,
    TlsMaterial,
    free_port,
    wait_for,
)


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DEPWATCH_",
                                                                       "OTEL_"))}  # fmt: skip
    base.update(extra)
    return base


@contextmanager
def depwatch_process(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    env = {**env, "DEPWATCH_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "exporter", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: _get(port, "/healthz")[0] == 200, timeout=15,
                 description="depwatch answering /healthz")  # fmt: skip
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero_within_2s_with_every_target_blackholed(
        redis_standalone: RedisServer,
        threaded_reset_proxy_factory: Callable[[str, int], ThreadedResetProxy],
        sig: signal.Signals) -> None:
    proxy = threaded_reset_proxy_factory(redis_standalone.host, redis_standalone.port)
    proxy.blackhole(True)
    env = _env(REDIS_ADDRESS=proxy.address, DEPWATCH_HEALTH_CHECK_TIMEOUT="10s",
               DEPWATCH_PROBE_INTERVAL="1s", DEPWATCH_LOG_LEVEL="debug")  # fmt: skip
    with depwatch_process(env) as (proc, _port):
        wait_for(lambda: proxy.connections_accepted >= 1, timeout=10)
        time.sleep(0.3)  # the check is now hanging inside its attempt
        started = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 2.0, elapsed


def test_secret_never_in_any_output(redis_tls_password: RedisServer,
                                    tls_material: TlsMaterial, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Wrong and right passwords, in check (text/json), serve (/metrics, /status, logs)."""
    wrong = "Wr0ng-" + REDIS_PASSWORD
    common = {"REDIS_ADDRESS": redis_tls_password.address, "REDIS_TLS_ENABLED": "true",
              "REDIS_TLS_CA_FILE": str(tls_material.ca_file),
              "DEPWATCH_PROBE_INTERVAL": "300ms", "DEPWATCH_LOG_LEVEL": "debug"}  # fmt: skip
    outputs: list[str] = []
    for password in (wrong, REDIS_PASSWORD):
        for output in ("text", "json"):
            proc = subprocess.run([sys.executable, "-m", "exporter", "check", "--output", output],
                                  env=_env(**common, REDIS_PASSWORD=password), capture_output=True,
                                  text=True, timeout=60, check=False)  # fmt: skip
            assert proc.returncode == (1 if password == wrong else 0), proc.stdout + proc.stderr
            outputs += [proc.stdout, proc.stderr]
        pw_file = tmp_path / f"pw-{len(outputs)}"
        pw_file.write_text(password + "\n")
        env = _env(**common, REDIS_PASSWORD_FILE=str(pw_file))
        with depwatch_process(env) as (proc, port):
            wait_for(lambda: "redis_health_checks_total{" in _get(port, "/metrics")[1],
                     timeout=10)  # fmt: skip
            time.sleep(1.0)
            outputs += [_get(port, "/metrics")[1], _get(port, "/status")[1], _get(port, "/")[1]]
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=5)
            outputs += [out, err]
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                                check=True).stdout  # fmt: skip
            outputs.append(ps)
    assert any("reason=auth" in o or '"reason": "auth"' in o for o in outputs)
    for text in outputs:
        assert REDIS_PASSWORD not in text
        assert wrong not in text
