"""Tier 3: real standalone redis-server processes (plain, TLS + password, ACL, renamed)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs
from support.depwatch_harness import fast_env, running_depwatch, series, value
from support.redis_servers import (
    ACL_PASSWORD,
    ACL_USERNAME,
    REDIS_PASSWORD,
    RedisServer,
    TlsMaterial,
    free_port,
)

pytestmark = pytest.mark.asyncio


def tls_env(server: RedisServer, tls: TlsMaterial, **extra: str) -> dict[str, str]:
    env = fast_env(REDIS_ADDRESS=server.address, REDIS_TLS_ENABLED="true",
                   REDIS_TLS_CA_FILE=str(tls.ca_file))  # fmt: skip
    env.update(extra)
    return env


def _up(node: str):
    return lambda m: value(m, "redis_health_check_up", node=node) == 1


def _failed(node: str, reason: str):
    return lambda m: (value(m, "redis_health_check_failed_total", node=node, reason=reason)
                      or 0) >= 1  # fmt: skip


def _checks_at_least(node: str, n: int):
    return lambda m: (value(m, "redis_health_checks_total", node=node) or 0) >= n


def _auth_calls(server: RedisServer) -> int:
    """AUTH commands seen by the server; the measuring client authenticates with HELLO
    (RESP3), so only depwatch's AUTHs count."""
    with server.client(protocol=3) as client:
        stats = client.info("commandstats").get("cmdstat_auth", {})
    return int(stats.get("calls", 0)) + int(stats.get("rejected_calls", 0))


async def test_standalone_plain_up_with_info(redis_standalone: RedisServer) -> None:
    node = redis_standalone.address
    async with running_depwatch(fast_env(REDIS_ADDRESS=node)) as dw:
        m = await dw.wait_metrics(_up(node), within=10)
        assert value(m, "redis_health_checks_total", node=node) >= 1
        assert value(m, "redis_node_maxclients", node=node) == 10000
        assert value(m, "redis_node_connected_clients", node=node) >= 1
        assert value(m, "redis_node_rejected_connections_total", node=node) == 0
        assert value(m, "redis_health_check_duration_seconds_count", node=node) >= 1
        assert value(m, "redis_health_check_last_success_timestamp_seconds", node=node) > 0
        assert series(m, "redis_cluster_node_info") == {}
        status = await dw.status()
        assert status["redis"]["mode"] == "standalone" and status["ok"] is True


async def test_tls_password_up(redis_tls_password: RedisServer, tls_material: TlsMaterial) -> None:
    node = redis_tls_password.address
    env = tls_env(redis_tls_password, tls_material, REDIS_PASSWORD=REDIS_PASSWORD)
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(_up(node), within=10)


async def test_wrong_password_is_auth_once_per_check(redis_tls_password: RedisServer,
                                                     tls_material: TlsMaterial) -> None:
    node = redis_tls_password.address
    env = tls_env(redis_tls_password, tls_material, REDIS_PASSWORD="wrong-" + REDIS_PASSWORD,
                  DEPWATCH_PROBE_INTERVAL="30s")  # one cycle only
    before = _auth_calls(redis_tls_password)
    async with running_depwatch(env) as dw:
        m = await dw.wait_metrics(_failed(node, "auth"), within=10)
        assert value(m, "redis_health_checks_total", node=node) == 1
        assert value(m, "redis_health_check_attempt_failures_total", node=node,
                     reason="auth") == 1  # fmt: skip
    assert _auth_calls(redis_tls_password) - before == 1


@pytest.mark.parametrize("bad", ["wrong_ca", "wrong_name"])
async def test_tls_failures_are_tls(redis_tls_password: RedisServer, tls_material: TlsMaterial,
                                    bad: str) -> None:
    node = redis_tls_password.address
    extra = {"REDIS_PASSWORD": REDIS_PASSWORD}
    if bad == "wrong_ca":
        extra["REDIS_TLS_CA_FILE"] = str(tls_material.wrong_ca_file)
    else:
        extra["REDIS_TLS_SERVER_NAME"] = "not-the-server.example"
    env = tls_env(redis_tls_password, tls_material, **extra)
    with redis_tls_password.client() as client:
        pings_before = int(client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
    async with running_depwatch(env) as dw:
        m = await dw.wait_metrics(_failed(node, "tls"), within=10)
        assert value(m, "redis_health_check_up", node=node) == 0
    with redis_tls_password.client() as client:
        pings_after = int(client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
    assert pings_after == pings_before  # no plaintext fallback ever reached the server


async def test_acl_user(redis_acl: RedisServer) -> None:
    node = redis_acl.address
    env = fast_env(REDIS_ADDRESS=node, REDIS_USERNAME=ACL_USERNAME, REDIS_PASSWORD=ACL_PASSWORD)
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(_up(node), within=10)


async def test_acl_user_wrong_password(redis_acl: RedisServer) -> None:
    node = redis_acl.address
    env = fast_env(REDIS_ADDRESS=node, REDIS_USERNAME=ACL_USERNAME, REDIS_PASSWORD="nope")
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(_failed(node, "auth"), within=10)


async def test_nothing_listening_is_connection_refused() -> None:
    node = f"127.0.0.1:{free_port()}"
    async with running_depwatch(fast_env(REDIS_ADDRESS=node)) as dw:
        m = await dw.wait_metrics(_failed(node, "connection_refused"), within=10)
        assert value(m, "redis_health_check_attempt_failures_total", node=node,
                     reason="connection_refused") >= 3  # fmt: skip


async def test_unresolvable_host_is_dns() -> None:
    node = "no-such-host.invalid:6379"
    async with running_depwatch(fast_env(REDIS_ADDRESS=node,
                                         DEPWATCH_HEALTH_CHECK_TIMEOUT="2s")) as dw:
        await dw.wait_metrics(_failed(node, "dns"), within=20)


async def test_renamed_config_and_debug(redis_renamed: RedisServer) -> None:
    node = redis_renamed.address
    with capture_logs() as logs:
        async with running_depwatch(fast_env(REDIS_ADDRESS=node)) as dw:
            m = await dw.wait_metrics(_up(node), within=10)
            await dw.wait_metrics(_checks_at_least(node, 3), within=10)
            assert value(m, "redis_node_maxclients", node=node) == 10000
    assert not [e for e in logs if e["log_level"] in ("error", "warning")], logs


async def test_only_allowed_commands_are_sent(redis_tls_password: RedisServer,
                                              tls_material: TlsMaterial) -> None:
    quiet = {"protocol": 2, "driver_info": None}  # the measuring client sends no HELLO/SETINFO
    with redis_tls_password.client(**quiet) as client:
        client.config_resetstat()
    node = redis_tls_password.address
    env = tls_env(redis_tls_password, tls_material, REDIS_PASSWORD=REDIS_PASSWORD)
    async with running_depwatch(env) as dw:
        await dw.wait_metrics(_checks_at_least(node, 3), within=10)
    with redis_tls_password.client(**quiet) as client:
        stats = client.info("commandstats")
    # the measuring client sends AUTH and INFO itself; depwatch: AUTH, CLIENT SETNAME, PING, INFO
    assert set(stats) <= {"cmdstat_ping", "cmdstat_auth", "cmdstat_info", "cmdstat_client|setname",
                          "cmdstat_config|resetstat"}, stats  # fmt: skip
