"""depwatch as PID 1 of a new PID namespace handles SIGTERM from the first instant.

``unshare --pid --fork --mount-proc python -m exporter serve`` makes depwatch PID 1 of
a fresh namespace (unshare itself stays outside, waiting, with SIGTERM ignored). The
kernel does not apply the default action of SIGTERM to a namespace's init: a signal
sent to PID 1 (from inside, or from an ancestor namespace as here) is *dropped* unless
PID 1 has installed a handler. So SIGTERM is sent to the child itself, found through
``/proc/<unshare>/task/<unshare>/children``.

What "from the first instant" can mean for a Python program: the handler exists once
the interpreter has started and ``exporter.cli.main`` runs (its first statement). A
SIGTERM that arrives earlier, while the interpreter itself is still starting, is dropped
by the kernel; the test measures that window (``/proc/<pid>/status`` SigCgt shows when
the handler is in place) and sends SIGTERM at that instant, and at later start-up
stages, each time before the HTTP server is up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from support.redis_servers import free_port

REPO = Path(__file__).resolve().parents[2]
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


@contextmanager
def blackhole_port() -> Iterator[int]:
    """Listens but never accepts: connects complete (backlog), nothing is ever answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "DEPWATCH_", "OTEL_"))}  # fmt: skip
    env.update(extra)
    return env


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _catches_sigterm(pid: int) -> bool:
    caught = _status(pid).get("SigCgt")
    return caught is not None and bool(int(caught, 16) & SIGTERM_BIT)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class Pid1:
    """unshare + depwatch as PID 1; ``child`` is depwatch's pid in our namespace."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "exporter",
             "serve"],
            env={**env, "DEPWATCH_LISTEN_ADDRESS": f"127.0.0.1:{self.port}"}, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.child = self._find_child()

    def _find_child(self) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = _children(self.proc.pid)
            if children:
                return children[0]
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise AssertionError(f"unshare exited with {self.proc.returncode}: {err}")
            time.sleep(0.0005)
        raise AssertionError("unshare did not fork a child")

    def ns_pid(self) -> str:
        return _status(self.child).get("NSpid", "").split()[-1]

    def terminate_and_wait(self) -> tuple[int, float, str]:
        sent = time.monotonic()
        os.kill(self.child, signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("depwatch as PID 1 ignored SIGTERM for 5 s") from None
        return self.proc.returncode, time.monotonic() - sent, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in (self.child, self.proc.pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.communicate(timeout=10)


@pytest.fixture
def hanging_targets_env() -> Iterator[dict[str, str]]:
    with blackhole_port() as redis_port, blackhole_port() as grpc, blackhole_port() as http:
        yield _env(REDIS_ADDRESS=f"127.0.0.1:{redis_port}",
                   OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
                   DEPWATCH_OTLP_GRPC_PORT=str(grpc), DEPWATCH_OTLP_HTTP_PORT=str(http),
                   DEPWATCH_HEALTH_CHECK_TIMEOUT="10s", DEPWATCH_PROBE_INTERVAL="1s")  # fmt: skip


def test_pid1_serving_sigterm_exits_zero_within_2s(hanging_targets_env: dict[str, str]) -> None:
    dw = Pid1(hanging_targets_env)
    try:
        assert dw.ns_pid() == "1", "depwatch is not PID 1 of its namespace"
        deadline = time.monotonic() + 20
        while _healthz(dw.port) != 200:
            assert time.monotonic() < deadline, "depwatch (PID 1) never served /healthz"
            assert dw.proc.poll() is None, dw.proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # probes are now hanging inside their attempts
        code, took, err = dw.terminate_and_wait()
    finally:
        dw.kill()
    assert code == 0, err
    assert took < 2.0, took
    assert "Traceback" not in err


@pytest.mark.parametrize("after_handler", [0.0, 0.05, 0.2],
                         ids=["at-handler-install", "handler+50ms", "handler+200ms"])
def test_pid1_sigterm_before_http_server_is_up(hanging_targets_env: dict[str, str],
                                               after_handler: float) -> None:
    dw = Pid1(hanging_targets_env)
    try:
        deadline = time.monotonic() + 10
        while not _catches_sigterm(dw.child):
            assert time.monotonic() < deadline, "no SIGTERM handler after 10 s"
            assert dw.proc.poll() is None, dw.proc.communicate()
            time.sleep(0.0005)
        handler_after = time.monotonic() - dw.spawned_at
        if after_handler:
            time.sleep(after_handler)
        assert dw.ns_pid() == "1"
        serving = _listening(dw.port)
        code, took, err = dw.terminate_and_wait()
    finally:
        dw.kill()
    print(f"SIGTERM handler in place {handler_after * 1000:.0f} ms after spawn; "
          f"signalled {after_handler * 1000:.0f} ms later (HTTP listening: {serving}); "
          f"exited {code} in {took * 1000:.0f} ms")
    assert not serving or after_handler > 0, "the HTTP server was up before the handler"
    assert code == 0, err
    assert took < 2.0, took
    assert "Traceback" not in err
    assert handler_after < 5.0, "the window in which SIGTERM is dropped is too long"
