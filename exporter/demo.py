"""``depwatch demo``: the incident in a box, on a fresh machine with nothing else installed.

Starts in-process stand-ins — a RESP server from fakeredis and an OTLP/HTTP-only
receiver — plus a stand-in "application" child process that holds a connection to
the HTTP port, configures the application side as ``grpc`` on the gRPC port (where
nothing listens), and serves. /metrics then shows Redis up and the incident's OTLP
mismatch: ``configured_unreachable`` and ``observed_port``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from exporter.config import OTEL_VARIABLES, SETTINGS, ConfigError, load_settings
from exporter.logs import configure_logging, get_logger

__all__ = ["demo_env", "run_demo"]

#: settings the demo decides itself; a user value for them would be silently ignored
_DEMO_OWNED = frozenset(
    [s.field for s in SETTINGS if s.env.startswith(("REDIS_", "AWS_"))]
    + ["otlp_grpc_port", "otlp_http_port", "aws_secret_name"]
    + [env for env, _ in OTEL_VARIABLES]
)

#: the stand-in application: holds one connection to the collector's HTTP port until
#: its stdin closes (so it never outlives the demo)
_APP_SCRIPT = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sys.stdin.read()
s.close()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _fake_redis() -> Iterator[int]:
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="demo-fakeredis", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@contextmanager
def _stand_in_application(http_port: int) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", _APP_SCRIPT, str(http_port)],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        yield child
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=2)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=2)


def demo_env(*, redis_port: int, grpc_port: int, http_port: int,
             base: Mapping[str, str]) -> dict[str, str]:
    """The application's environment as the incident had it, pointed at the stand-ins."""
    env = {k: v for k, v in base.items() if k.startswith("DEPWATCH_")}
    env.update({
        "REDIS_ADDRESS": f"127.0.0.1:{redis_port}",
        "REDIS_POOL_SIZE": "1000",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc_port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "DEPWATCH_OTLP_GRPC_PORT": str(grpc_port),
        "DEPWATCH_OTLP_HTTP_PORT": str(http_port),
    })  # fmt: skip
    return env


def run_demo(flags: Mapping[str, Any]) -> int:
    owned = sorted(k for k in _DEMO_OWNED if flags.get(k) is not None)
    if owned:
        sys.stderr.write("depwatch: demo sets Redis and OTLP settings itself; drop "
                         f"{', '.join(owned)} or use 'depwatch serve'\n")  # fmt: skip
        return 2
    try:
        return asyncio.run(_demo(flags))
    except ConfigError as exc:
        sys.stderr.write(f"depwatch: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"depwatch: demo cannot start: {exc.strerror or exc}\n")
        return 2


async def _demo(flags: Mapping[str, Any]) -> int:
    from exporter import demo_receiver
    from exporter.cli import serve

    runner, http_port = await demo_receiver.start("127.0.0.1", 0)
    try:
        with _fake_redis() as redis_port, _stand_in_application(http_port):
            env = demo_env(redis_port=redis_port, grpc_port=_free_port(), http_port=http_port,
                           base=os.environ)  # fmt: skip
            settings = load_settings(env, flags)
            configure_logging(settings.log_level, settings.log_format)
            host, port = settings.listen_address
            get_logger().info(
                "demo: stand-ins started; the application is configured for OTLP grpc on a "
                "port where only OTLP/HTTP answers (the incident's mismatch)",
                redis=env["REDIS_ADDRESS"], otlp_configured=env["OTEL_EXPORTER_OTLP_ENDPOINT"],
                otlp_http_receiver=f"127.0.0.1:{http_port}",
                metrics=f"http://{host or 'localhost'}:{port}{settings.metrics_path}",
                status=f"http://{host or 'localhost'}:{port}/status",
            )  # fmt: skip
            return await serve(settings)
    finally:
        await runner.cleanup()
