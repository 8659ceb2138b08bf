"""Live: real sockets held by child processes, read back through observe().

The test process plays depwatch (its own sockets are excluded by inode); a child
process plays the application. The TCP counter test runs in a fresh network
namespace so that nothing else on the machine moves its counters.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from socket_fixtures import Holder, RedisProc, stop, wait_until

from exporter.model import SocketObservation
from exporter.probes.sockets import observe
from exporter.sockets.own_inodes import own_socket_inodes

pytestmark = pytest.mark.timeout(60)

StartHolder = Callable[[list[tuple[int, str, int]]], Holder]
PROC = Path("/proc")


@pytest.fixture(params=["sock_diag", "proc"])
def source(request: pytest.FixtureRequest) -> str:
    """Each live test runs on both readers of the table: netlink and the files."""
    return str(request.param)


def observe_redis(
    node: tuple[str, int], label: str, source: str, *, own: bool = True
) -> SocketObservation:
    obs = observe(
        PROC,
        redis_nodes={node: label},
        collector={},
        collector_hosts=frozenset(),
        own_inodes=own_socket_inodes() if own else frozenset(),
        sock_diag=source == "sock_diag",
    )
    assert (obs.source, obs.sock_diag_error) == (source, None)
    return obs


def test_child_pool_is_counted_own_connection_excluded_then_time_wait(
    sockets_redis: RedisProc, holder: StartHolder, source: str
) -> None:
    node = (sockets_redis.host, sockets_redis.port)
    label = f"{sockets_redis.host}:{sockets_redis.port}"
    v4, mapped = 3, 2  # mapped: AF_INET6 sockets to ::ffff:127.0.0.1 live in tcp6
    with socket.create_connection(node, timeout=5) as mine:  # depwatch's own connection
        mine.sendall(b"PING\r\n")
        assert mine.recv(16).startswith(b"+PONG")
        app = holder(
            [(4, sockets_redis.host, sockets_redis.port)] * v4
            + [(6, "::ffff:127.0.0.1", sockets_redis.port)] * mapped
        )
        k = v4 + mapped

        obs = observe_redis(node, label, source)
        assert obs.error is None
        assert obs.redis_sockets[label]["established"] == k
        all_of_them = observe_redis(node, label, source, own=False).redis_sockets[label]
        assert all_of_them["established"] == k + 1
        # earlier closed connections (the fixture's readiness PING) are in TIME_WAIT already
        earlier = obs.redis_sockets[label]["time_wait"]

        app.close_connections()  # the client closes first: TIME_WAIT on its side

        def settled() -> bool:
            states = observe_redis(node, label, source).redis_sockets[label]
            return states["established"] == 0 and states["time_wait"] == earlier + k

        seen = observe_redis(node, label, source).redis_sockets
        assert wait_until(settled, timeout=10), dict(seen)
    app.stop()


@pytest.fixture
def listeners() -> Iterator[Callable[[str], tuple[socket.socket, int]]]:
    with ExitStack() as stack:

        def listen(host: str) -> tuple[socket.socket, int]:
            srv = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            srv.bind((host, 0))
            srv.listen(16)
            return srv, srv.getsockname()[1]

        yield listen


def test_child_connection_to_collector_port_is_a_live_port(
    holder: StartHolder, listeners: Callable[[str], tuple[socket.socket, int]], source: str
) -> None:
    """The incident's shape: configured grpc on one port, traffic on another."""
    collector = "127.0.0.2"  # a loopback address of its own: only the collector's
    _, http_port = listeners(collector)
    _, grpc_port = listeners(collector)
    targets = {(collector, p): f"{collector}:{p}" for p in (grpc_port, http_port)}

    def look() -> SocketObservation:
        obs = observe(
            PROC,
            redis_nodes={},
            collector=targets,
            collector_hosts=frozenset({collector}),
            own_inodes=own_socket_inodes(),
            sock_diag=source == "sock_diag",
        )
        assert obs.source == source
        return obs

    with socket.create_connection((collector, grpc_port), timeout=5):  # depwatch's probe
        assert look().collector_live_ports == frozenset()
        app = holder([(4, collector, http_port)])
        obs = look()
        assert obs.collector_live_ports == frozenset({http_port})
        assert obs.collector_sockets[f"{collector}:{http_port}"]["established"] == 1
        assert obs.collector_sockets[f"{collector}:{grpc_port}"]["established"] == 0

        app.close_connections()
        assert wait_until(lambda: look().collector_live_ports == frozenset(), timeout=10)
    app.stop()


_RESETTER = textwrap.dedent(
    """
    import socket, struct, subprocess, sys
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    print("ready", flush=True)
    sys.stdin.readline()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    client = socket.create_connection(srv.getsockname(), timeout=5)
    peer, _ = srv.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()                      # linger 0: RST instead of FIN
    peer.settimeout(5)
    try:
        peer.recv(1)
    except ConnectionResetError:
        pass
    refused = socket.socket()
    refused.settimeout(5)
    try:
        refused.connect(srv.getsockname()[:1] + (1,))  # nothing listens on port 1
    except ConnectionRefusedError:
        pass
    print("done", flush=True)
    sys.stdin.readline()
    """
)


def test_tcp_counters_move_on_reset_in_a_fresh_namespace() -> None:
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is required (root, CAP_SYS_ADMIN)"
    proc = subprocess.Popen(
        [unshare, "--net", sys.executable, "-c", _RESETTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        # DEPWATCH_PROC_ROOT-style: the namespace's tables through /proc/<pid>
        root = PROC / str(proc.pid)
        before = observe(
            root, redis_nodes={}, collector={}, collector_hosts=frozenset(), own_inodes=frozenset()
        )
        assert before.error is None
        assert dict(before.tcp_counters) == {
            "attempt_fails": 0,
            "estab_resets": 0,
            "out_resets": 0,
            "retrans_segs": 0,
        }
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        after = observe(
            root, redis_nodes={}, collector={}, collector_hosts=frozenset(), own_inodes=frozenset()
        )
        # both ends leave ESTABLISHED for CLOSED: the resetter and the reset one
        assert after.tcp_counters["estab_resets"] == 2
        assert after.tcp_counters["out_resets"] >= 2  # our RST, and the refusal's
        assert after.tcp_counters["attempt_fails"] == 1
    finally:
        proc.stdin.close()
        stop(proc)
        proc.stdout.close()
