"""Shared fixtures, one section per family.

Tier-3 fixtures start real redis-server processes (tests/support/redis_servers.py).
They never skip: a missing redis-server is a fixture error naming the fix.
Import the helpers as ``support.redis_servers`` (tests/ is on sys.path under
pytest's default import mode; tests/ has no __init__.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio
from support.otlp_receivers import Receivers
from support.redis_servers import (
    ACL_LIMITED_PASSWORD,
    ACL_LIMITED_USERNAME,
    ACL_PASSWORD,
    ACL_USERNAME,
    REDIS_PASSWORD,
    DirectiveSpec,
    RedisCluster,
    RedisServer,
    ResetProxy,
    ThreadedResetProxy,
    TlsMaterial,
    live_servers,
    make_tls_material,
)

# ---------------------------------------------------------------------------
# Process hygiene
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_redis_servers() -> Iterator[None]:
    """Fail the session if any redis-server started by the helpers is still running."""
    yield
    leftovers = live_servers()
    for server in leftovers:
        server.kill()
    if leftovers:
        pytest.fail(f"tests left redis-server processes running (now killed): {leftovers}")


# ---------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """CA, server cert (localhost, 127.0.0.1, redis.test), client cert and a wrong CA."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


# ---------------------------------------------------------------------------
# Standalone redis-server fixtures (module scope: shared, leave them as found)
# ---------------------------------------------------------------------------


def _started(server: RedisServer) -> Iterator[RedisServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Plain TCP, no auth."""
    yield from _started(RedisServer(tmp_path_factory.mktemp("redis-standalone")))


@pytest.fixture(scope="module")
def redis_tls_password(
    tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial
) -> Iterator[RedisServer]:
    """TLS only (no plaintext port), ``requirepass REDIS_PASSWORD``."""
    server = RedisServer(
        tmp_path_factory.mktemp("redis-tls-password"), tls=tls_material, password=REDIS_PASSWORD
    )
    yield from _started(server)


@pytest.fixture(scope="module")
def redis_acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """ACL users: ACL_USERNAME (all rights), ACL_LIMITED_USERNAME (``+@connection`` only:
    PING yes, INFO/CLUSTER NOPERM). The default user is off, so no-auth gets NOAUTH."""
    server = RedisServer(
        tmp_path_factory.mktemp("redis-acl"),
        acl_users={ACL_USERNAME: ACL_PASSWORD},
        auth=(ACL_USERNAME, ACL_PASSWORD),
        extra=[
            ("user", "default", "off"),
            (
                "user",
                ACL_LIMITED_USERNAME,
                "on",
                f">{ACL_LIMITED_PASSWORD}",
                "-@all",
                "+@connection",
            ),
        ],
    )
    yield from _started(server)


@pytest.fixture(scope="module")
def redis_renamed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """CONFIG and DEBUG renamed away (as on managed Redis): both are unknown commands."""
    server = RedisServer(
        tmp_path_factory.mktemp("redis-renamed"),
        extra=[("rename-command", "CONFIG", ""), ("rename-command", "DEBUG", "")],
    )
    yield from _started(server)


@pytest.fixture
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial
) -> Iterator[Callable[..., RedisServer]]:
    """Function-scoped standalone servers for fault tests; every one is stopped at teardown.

    ``make(tls=False, password=None, extra=None, **RedisServer kwargs) -> RedisServer`` (started).
    """
    made: list[RedisServer] = []

    def make(
        *,
        tls: bool = False,
        password: str | None = None,
        extra: DirectiveSpec | None = None,
        **kwargs: object,
    ) -> RedisServer:
        server = RedisServer(
            tmp_path_factory.mktemp("redis-fn"),
            tls=tls_material if tls else None,
            password=password,
            extra=extra,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.stop()


# ---------------------------------------------------------------------------
# Redis Cluster fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_cluster_tls(
    tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial
) -> Iterator[RedisCluster]:
    """3 primaries + 3 replicas, TLS everywhere (clients, bus, replication), REDIS_PASSWORD.

    Shared by every test in the module: do not kill, pause, fail over or
    reshard it (use ``redis_cluster_factory`` for that).
    """
    cluster = RedisCluster(
        tmp_path_factory.mktemp("redis-cluster-tls"), tls=tls_material, password=REDIS_PASSWORD
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_factory(
    tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial
) -> Iterator[Callable[..., RedisCluster]]:
    """Function-scoped clusters for fault tests (kill, failover, pause); all stopped at teardown.

    ``make(primaries=3, replicas_per_primary=1, tls=False, password=None,
    node_timeout_ms=2000, extra=None) -> RedisCluster`` (started and healthy).
    """
    made: list[RedisCluster] = []

    def make(
        *,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        tls: bool = False,
        password: str | None = None,
        node_timeout_ms: int = 2000,
        extra: DirectiveSpec | None = None,
    ) -> RedisCluster:
        cluster = RedisCluster(
            tmp_path_factory.mktemp("redis-cluster-fn"),
            primaries=primaries,
            replicas_per_primary=replicas_per_primary,
            tls=tls_material if tls else None,
            password=password,
            node_timeout_ms=node_timeout_ms,
            extra=extra,
        )
        made.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


# ---------------------------------------------------------------------------
# Reset proxies
# ---------------------------------------------------------------------------


@pytest_asyncio.fixture
async def reset_proxy_factory() -> AsyncIterator[Callable[[str, int], Awaitable[ResetProxy]]]:
    """``await make(host, port) -> ResetProxy``, started in the test's loop, stopped after."""
    made: list[ResetProxy] = []

    async def make(host: str, port: int) -> ResetProxy:
        proxy = ResetProxy(host, port)
        await proxy.start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        await proxy.stop()


@pytest.fixture
def threaded_reset_proxy_factory() -> Iterator[Callable[[str, int], ThreadedResetProxy]]:
    """``make(host, port) -> ThreadedResetProxy`` (started, own loop thread); stopped at teardown.

    For sync tests and for clients in a subprocess (e.g. depwatch itself).
    """
    made: list[ThreadedResetProxy] = []

    def make(host: str, port: int) -> ThreadedResetProxy:
        proxy = ThreadedResetProxy(host, port)
        made.append(proxy)
        proxy.start()
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


# ---------------------------------------------------------------------------
# OTLP stand-ins
# ---------------------------------------------------------------------------


@pytest_asyncio.fixture
async def receivers() -> AsyncIterator[Receivers]:
    """OTLP receivers and raw TCP servers on 127.0.0.1, all stopped after the test."""
    started = Receivers()
    try:
        yield started
    finally:
        await started.stop()
