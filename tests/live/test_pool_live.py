"""The application's pool seen through depwatch's /metrics: a child process plays the app."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from support.depwatch_harness import fast_env, running_depwatch, value
from support.otlp_receivers import Receivers
from support.redis_servers import RedisServer

#: holds N connections to host:port until stdin closes; prints "ready" once connected
_APP = textwrap.dedent("""
    import socket, sys
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    socks = [socket.create_connection((host, port)) for _ in range(n)]
    print("ready", flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()
""")


def start_app(host: str, port: int, n: int) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", _APP, host, str(port), str(n)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def stop_app(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=10)


@pytest.mark.asyncio
async def test_pool_current_conns_counts_the_app_not_depwatch(
        redis_standalone: RedisServer) -> None:
    node = redis_standalone.address
    k = 7
    env = fast_env(REDIS_ADDRESS=node, REDIS_POOL_SIZE="50")
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(lambda m: value(m, "redis_health_check_up", node=node) == 1,
                              within=10)  # fmt: skip
        m = await dw.metrics()
        assert value(m, "redis_pool_current_conns", node=node) == 0  # depwatch's own excluded
        assert value(m, "redis_pool_max_conns", node=node) == 50
        child = start_app(redis_standalone.host, redis_standalone.port, k)
        try:
            await dw.wait_metrics(
                lambda m: value(m, "redis_pool_current_conns", node=node) == k, within=10)
        finally:
            stop_app(child)  # the client closes first: its side goes to TIME_WAIT
        m = await dw.wait_metrics(
            lambda m: (value(m, "redis_pool_sockets", node=node, state="time_wait") or 0) >= k
            and value(m, "redis_pool_current_conns", node=node) == 0, within=10)
        assert value(m, "redis_pool_sockets", node=node, state="established") == 0


@pytest.mark.asyncio
async def test_observed_port_mismatch_found_and_cleared() -> None:
    receivers = Receivers()
    try:
        http = await receivers.http()
        grpc_port = receivers.closed()  # nothing answers gRPC: the incident's collector view
        env = fast_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{grpc_port}",
                       OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                       DEPWATCH_OTLP_GRPC_PORT=str(grpc_port),
                       DEPWATCH_OTLP_HTTP_PORT=str(http.port))  # fmt: skip

        def flag(reason: str):  # type: ignore[no-untyped-def]
            return lambda m: value(m, "otlp_exporter_config_mismatch", signal="metrics",
                                   reason=reason)  # fmt: skip

        async with running_depwatch(env) as dw:
            m = await dw.wait_metrics(lambda m: flag("configured_unreachable")(m) == 1,
                                      within=10)  # fmt: skip
            assert flag("observed_port")(m) == 0
            assert flag("port_protocol")(m) == 0
            child = start_app("127.0.0.1", http.port, 1)  # the app posts to the HTTP port
            try:
                m = await dw.wait_metrics(lambda m: flag("observed_port")(m) == 1, within=10)
                assert value(m, "otlp_collector_connections", endpoint=f"127.0.0.1:{http.port}",
                             state="established") == 1  # fmt: skip
            finally:
                stop_app(child)
            await dw.wait_metrics(lambda m: flag("observed_port")(m) == 0, within=10)
            status = await dw.status()
            advice = "\n".join(status["otlp_advice"]["lines"])
            assert str(http.port) in advice
    finally:
        await receivers.stop()


@pytest.mark.asyncio
async def test_pod_tcp_estab_resets_moves_on_proxy_reset(redis_standalone: RedisServer,
                                                         reset_proxy_factory) -> None:  # type: ignore[no-untyped-def]
    proxy = await reset_proxy_factory(redis_standalone.host, redis_standalone.port)
    node = proxy.address
    async with running_depwatch(fast_env(REDIS_ADDRESS=node)) as dw:
        m = await dw.wait_metrics(lambda m: value(m, "redis_health_check_up", node=node) == 1,
                                  within=10)  # fmt: skip
        before = value(m, "pod_tcp_estab_resets_total")
        assert before is not None
        proxy.reset_next(1)  # RST on depwatch's established connection
        await dw.wait_metrics(
            lambda m: (value(m, "pod_tcp_estab_resets_total") or 0) > before, within=10)


def test_check_reports_the_incident_budget(redis_standalone: RedisServer) -> None:
    """72 replicas x pool 1000 against maxclients 10000 (the fixture's): warned, exit 1."""
    env = {"PATH": "/usr/bin:/bin", "REDIS_ADDRESS": redis_standalone.address,
           "REDIS_POOL_SIZE": "1000"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "exporter", "check", "--replicas", "72"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "72,000" in proc.stdout and "10,000" in proc.stdout
    assert "exceeds its maxclients" in proc.stdout
