"""Smoke tests for the tier-3 infrastructure: the fixtures start what they claim.

Plain redis-py only, no depwatch code. Retries are disabled on every client
that must observe a single failure (redis-py 8 retries 10 times by default).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Awaitable, Callable

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from support.redis_servers import (
    ACL_LIMITED_PASSWORD,
    ACL_LIMITED_USERNAME,
    ACL_PASSWORD,
    ACL_USERNAME,
    NO_RETRY,
    REDIS_PASSWORD,
    RedisCluster,
    RedisServer,
    ResetProxy,
    ThreadedResetProxy,
    TlsMaterial,
    wait_for,
)

pytestmark = pytest.mark.slow


def _async_client(host: str, port: int, socket_timeout: float = 2.0) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=host, port=port, retry=AsyncRetry(NoBackoff(), 0), socket_timeout=socket_timeout
    )


# ---------------------------------------------------------------------------
# Standalone servers
# ---------------------------------------------------------------------------


def test_standalone_ping(redis_standalone: RedisServer) -> None:
    with redis.Redis(host=redis_standalone.host, port=redis_standalone.port) as client:
        assert client.ping()
    assert redis_standalone.address == f"127.0.0.1:{redis_standalone.port}"
    assert redis_standalone.pid


def test_tls_password_ping_and_failures(
    redis_tls_password: RedisServer, tls_material: TlsMaterial
) -> None:
    server = redis_tls_password
    common = {"host": server.host, "port": server.port, "retry": NO_RETRY, "socket_timeout": 2}
    with redis.Redis(
        **common, ssl=True, ssl_ca_certs=str(tls_material.ca_file), password=REDIS_PASSWORD
    ) as client:
        assert client.ping()
    with (
        redis.Redis(
            **common, ssl=True, ssl_ca_certs=str(tls_material.ca_file), password="wrong"
        ) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()
    # The certificate names redis.test; an unrelated CA must not verify it.
    with (
        redis.Redis(
            **common,
            ssl=True,
            ssl_ca_certs=str(tls_material.wrong_ca_file),
            password=REDIS_PASSWORD,
        ) as client,
        pytest.raises(redis.ConnectionError, match=r"(?i)certificate"),
    ):
        client.ping()
    # The certificate also names redis.test (for server-name override tests).
    context = ssl.create_default_context(cafile=str(tls_material.ca_file))
    with (
        socket.create_connection((server.host, server.port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname="redis.test") as tls_sock,
    ):
        assert tls_sock.version()
    # TLS-only: the port does not speak plaintext RESP.
    with (
        redis.Redis(**common, password=REDIS_PASSWORD) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()


def test_acl_users(redis_acl: RedisServer) -> None:
    common = {"host": redis_acl.host, "port": redis_acl.port, "retry": NO_RETRY}
    with redis.Redis(**common, username=ACL_USERNAME, password=ACL_PASSWORD) as client:
        assert client.ping()
        assert client.info("server")["redis_version"]
    with redis.Redis(**common) as client, pytest.raises(redis.AuthenticationError):
        client.ping()  # default user is off: NOAUTH
    with redis.Redis(
        **common, username=ACL_LIMITED_USERNAME, password=ACL_LIMITED_PASSWORD
    ) as client:
        assert client.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.info()


def test_renamed_commands(redis_renamed: RedisServer) -> None:
    with redis_renamed.client() as client:
        assert client.ping()
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.config_get("maxclients")
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command("DEBUG", "SLEEP", "0")


def test_pause_and_resume(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(password=REDIS_PASSWORD)
    server.pause()
    with server.client(socket_timeout=0.3) as client, pytest.raises(redis.TimeoutError):
        client.ping()
    server.resume()
    with server.client() as client:
        assert client.ping()


# ---------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------


def test_cluster_tls_shape(redis_cluster_tls: RedisCluster) -> None:
    cluster = redis_cluster_tls
    assert len(cluster.nodes) == 6
    primaries = cluster.primaries()
    assert len(primaries) == 3
    assert len(cluster.replicas()) == 3
    for primary in primaries:
        assert len(cluster.replicas_of(primary)) == 1

    with primaries[0].client() as client:
        shards = client.execute_command("CLUSTER", "SHARDS")
    assert len(shards) == 3
    slots_total = 0
    for shard in shards:  # redis-py parses each shard into a dict
        ranges = shard["slots"]
        pairs = zip(ranges[::2], ranges[1::2], strict=True)
        slots_total += sum(int(hi) - int(lo) + 1 for lo, hi in pairs)
        assert len(shard["nodes"]) == 2
        for node in shard["nodes"]:  # TLS-only nodes announce their TLS port
            assert f"{node['ip']}:{node['tls-port']}" in cluster.addresses
    assert slots_total == 16384

    with cluster.cluster_client() as rc:
        for key in ("a", "b", "c", "d"):  # spread over several slots
            rc.set(key, key)
            assert rc.get(key) == key


def test_cluster_failover_and_rejoin(redis_cluster_factory: Callable[..., RedisCluster]) -> None:
    cluster = redis_cluster_factory(tls=True, password=REDIS_PASSWORD)
    old_primary = cluster.primaries()[0]
    (replica,) = cluster.replicas_of(old_primary)

    started = time.monotonic()
    old_primary.kill()
    wait_for(
        lambda: replica in cluster.primaries(),
        timeout=cluster.node_timeout_ms / 1000 + 5,
        interval=0.2,
        description=f"{replica.address} promoted",
    )
    promoted_after = time.monotonic() - started
    cluster.wait_healthy(15)

    old_primary.restart()
    wait_for(
        lambda: old_primary in cluster.replicas_of(replica),
        timeout=15,
        interval=0.2,
        description=f"{old_primary.address} rejoined as a replica",
    )
    cluster.wait_healthy(15)
    assert promoted_after < cluster.node_timeout_ms / 1000 + 5


# ---------------------------------------------------------------------------
# Reset proxy
# ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_reset_proxy_reset_next(
    redis_standalone: RedisServer,
    reset_proxy_factory: Callable[[str, int], Awaitable[ResetProxy]],
) -> None:
    proxy = await reset_proxy_factory(redis_standalone.host, redis_standalone.port)

    # A fresh connection reset on its first bytes.
    client = _async_client(proxy.host, proxy.port)
    try:
        proxy.reset_next(1)
        with pytest.raises(redis.ConnectionError):
            await client.ping()
        assert await client.ping()
        # A pooled, established connection reset mid-flight.
        proxy.reset_next(1)
        with pytest.raises(redis.ConnectionError):
            await client.ping()
        assert await client.ping()
    finally:
        await client.aclose()
    assert proxy.resets_sent == 2
    assert proxy.connections_accepted >= 2


@pytest.mark.asyncio
async def test_reset_proxy_delay_and_blackhole(
    redis_standalone: RedisServer,
    reset_proxy_factory: Callable[[str, int], Awaitable[ResetProxy]],
) -> None:
    proxy = await reset_proxy_factory(redis_standalone.host, redis_standalone.port)
    client = _async_client(proxy.host, proxy.port)
    try:
        assert await client.ping()  # connect outside the timed part
        started = time.monotonic()
        await client.ping()
        baseline = time.monotonic() - started

        proxy.delay(0.25)
        started = time.monotonic()
        await client.ping()
        assert time.monotonic() - started >= 0.25 > baseline

        proxy.passthrough()
        proxy.blackhole(True)
        quick = _async_client(proxy.host, proxy.port, socket_timeout=0.3)
        try:
            with pytest.raises(redis.TimeoutError):
                await quick.ping()
        finally:
            await quick.aclose()
    finally:
        await client.aclose()


def test_threaded_reset_proxy(
    redis_tls_password: RedisServer,
    threaded_reset_proxy_factory: Callable[[str, int], ThreadedResetProxy],
) -> None:
    proxy = threaded_reset_proxy_factory(redis_tls_password.host, redis_tls_password.port)
    kwargs = redis_tls_password.client_kwargs() | {"host": proxy.host, "port": proxy.port}
    with redis.Redis(**kwargs, retry=NO_RETRY, socket_timeout=2) as client:
        proxy.reset_next(1)
        with pytest.raises(redis.ConnectionError):
            client.ping()  # reset during the TLS handshake
        assert client.ping()
    assert proxy.resets_sent == 1
    assert proxy.connections_accepted == 2
