"""Real redis-server processes, a TCP reset proxy and TLS material for tier-3 tests.

Everything here drives real processes and sockets on 127.0.0.1:

- ``RedisServer``: one ``redis-server`` with a generated config in its own
  directory (plain, TLS-only, password, ACL users, renamed commands), with
  fault injection (SIGKILL, SIGSTOP/SIGCONT) and a restart that keeps the
  directory, so a cluster node comes back with its ``nodes.conf``.
- ``RedisCluster``: N primaries x M replicas created with
  ``redis-cli --cluster create``; roles are read live, so they stay right
  after a failover.
- ``ResetProxy`` / ``ThreadedResetProxy``: a TCP forwarder that can answer
  with RST, add latency or swallow traffic, switchable at run time.
- ``make_tls_material``: a CA, a server certificate and an unrelated CA.

Every process started here is tracked; ``live_servers()`` lists what is
still running (the session fixture in conftest.py fails on leftovers) and an
``atexit`` hook kills anything a crashed session left behind.

redis-py 8 retries ConnectionError/TimeoutError 10 times with backoff by
default. Clients built here (``RedisServer.client``) disable that; a test
that asserts a single failure must disable it too (``retry=NO_RETRY`` for
sync clients, ``redis.asyncio.retry.Retry(NoBackoff(), 0)`` for asyncio).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.cluster
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "ACL_LIMITED_PASSWORD",
    "ACL_LIMITED_USERNAME",
    "ACL_PASSWORD",
    "ACL_USERNAME",
    "NO_RETRY",
    "REDIS_PASSWORD",
    "ConditionTimeoutError",
    "DirectiveSpec",
    "RedisCluster",
    "RedisServer",
    "RedisServerError",
    "ResetProxy",
    "ThreadedResetProxy",
    "TlsMaterial",
    "free_cluster_port",
    "free_port",
    "live_servers",
    "make_tls_material",
    "redis_server_binary",
    "wait_for",
    "wait_for_async",
]

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Credentials. Chosen to break naive quoting: '+', '/', '=' (the characters the
# ElastiCache base64-alnum derivation strips), and '@', ':', '#' (URL syntax).
# ---------------------------------------------------------------------------
REDIS_PASSWORD = "s3cr3t-T0ken+/="
ACL_USERNAME = "depwatch"
ACL_PASSWORD = "acl-p@ss:w0rd#1"
# A user that may connect and PING but not run INFO or CLUSTER (NOPERM paths).
ACL_LIMITED_USERNAME = "depwatch-ping-only"
ACL_LIMITED_PASSWORD = "ping only/pass"

NO_RETRY = Retry(NoBackoff(), 0)
"""Sync redis-py retry policy that fails on the first error."""

_LOCALHOST = "127.0.0.1"
_CLUSTER_BUS_OFFSET = 10000
_CLUSTER_SLOTS = 16384


class RedisServerError(RuntimeError):
    """A redis-server or redis-cli could not be started or set up."""


class ConditionTimeoutError(AssertionError):
    """``wait_for`` ran out of time (an AssertionError so tests report a failure)."""


# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------
_handed_out_ports: set[int] = set()
_port_lock = threading.Lock()


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_LOCALHOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (kernel-chosen)."""
    with _port_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((_LOCALHOST, 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise RedisServerError("no free TCP port on 127.0.0.1 after 50 tries")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_cluster_port() -> int:
    """A port p such that p and p + 10000 (the cluster bus) are both free.

    Picked at random below the kernel's ephemeral range when possible, so an
    outgoing connection can never take the port while a node is down between
    ``kill()`` and ``restart()``.
    """
    low_ephemeral, _ = _ephemeral_range()
    first, last = 10000, low_ephemeral - _CLUSTER_BUS_OFFSET - 1
    if last - first < 1000:  # unusual ip_local_port_range: fall back to anywhere
        first, last = 1024, 65535 - _CLUSTER_BUS_OFFSET
    with _port_lock:
        for _ in range(200):
            port = random.randint(first, last)
            bus = port + _CLUSTER_BUS_OFFSET
            if port in _handed_out_ports or bus in _handed_out_ports:
                continue
            if _can_bind(port) and _can_bind(bus):
                _handed_out_ports.update((port, bus))
                return port
    raise RedisServerError(f"no free port pair (p, p+10000) in {first}..{last}")


# ---------------------------------------------------------------------------
# Bounded waiting
# ---------------------------------------------------------------------------
_TRANSIENT: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.1,
    *,
    description: str | None = None,
    ignore: tuple[type[BaseException], ...] = _TRANSIENT,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Exceptions of the ``ignore`` types count as "not yet" (a node that is
    still starting refuses connections); any other exception propagates at
    once. On timeout, raises ConditionTimeoutError naming the last value or
    error seen. Blocks the thread: from async code use ``wait_for_async``.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
        except ignore as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            what = description or getattr(predicate, "__name__", "condition")
            raise ConditionTimeoutError(f"{what} not met within {timeout}s (last: {last!r})")
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,  # noqa: ASYNC109 - same signature as wait_for, on purpose
    interval: float = 0.1,
    *,
    description: str | None = None,
    ignore: tuple[type[BaseException], ...] = _TRANSIENT,
) -> T:
    """``wait_for`` for the event loop; ``predicate`` may be sync or async."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
        except ignore as exc:
            last = exc
        else:
            if result:
                return result  # type: ignore[return-value]
            last = result
        if time.monotonic() >= deadline:
            what = description or getattr(predicate, "__name__", "condition")
            raise ConditionTimeoutError(f"{what} not met within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsMaterial:
    """PEM files: a CA, a server cert/key signed by it, and an unrelated CA.

    The server certificate is valid for ``localhost``, ``127.0.0.1`` and
    ``redis.test`` and carries both serverAuth and clientAuth usages, which
    the cluster bus needs (``tls-cluster yes`` always authenticates peers).
    ``client_cert_file``/``client_key_file`` are a client identity from the
    same CA for mutual-TLS tests.
    """

    ca_file: Path
    cert_file: Path
    key_file: Path
    wrong_ca_file: Path
    client_cert_file: Path
    client_key_file: Path


def make_tls_material(directory: Path) -> TlsMaterial:
    """Generate a fresh CA, server and client certificates and a wrong CA in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="depwatch test CA")
    server = ca.issue_cert("localhost", "127.0.0.1", "redis.test")
    client = ca.issue_cert("depwatch-client.test", common_name="depwatch-client")
    wrong_ca = trustme.CA(organization_name="unrelated test CA")

    material = TlsMaterial(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
        wrong_ca_file=directory / "wrong-ca.pem",
        client_cert_file=directory / "client.pem",
        client_key_file=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(material.ca_file))
    wrong_ca.cert_pem.write_to_path(str(material.wrong_ca_file))
    material.cert_file.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(material.key_file))
    material.client_cert_file.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    client.private_key_pem.write_to_path(str(material.client_key_file))
    return material


# ---------------------------------------------------------------------------
# redis.conf rendering
# ---------------------------------------------------------------------------
DirectiveSpec = Mapping[str, str | Sequence[str]] | Iterable[Sequence[str]]
"""Extra config directives: ``{"maxclients": "100"}`` (a str value is ONE
argument, a sequence is several) or a list of ``(name, *args)`` tuples, which
allows repeated directives such as ``rename-command`` or ``user``."""

_BARE_ARG = re.compile(r"[A-Za-z0-9_.,:/@+=~&*%<>!^-]+")


def _quote_arg(arg: str) -> str:
    """Quote one argument the way redis.conf's parser (sdssplitargs) reads it back."""
    if _BARE_ARG.fullmatch(arg):
        return arg
    out = []
    for char in arg:
        if char in '\\"':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return '"' + "".join(out) + '"'


def _normalize(spec: DirectiveSpec | None) -> list[tuple[str, ...]]:
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        return [
            (name, value) if isinstance(value, str) else (name, *value)
            for name, value in spec.items()
        ]
    return [tuple(directive) for directive in spec]


def _render(directives: Iterable[Sequence[str]]) -> str:
    return "".join(" ".join(_quote_arg(str(a)) for a in d) + "\n" for d in directives)


def redis_server_binary() -> str:
    """Path of redis-server; fails loudly (never skips) when it is missing."""
    candidates = [os.environ.get("REDIS_SERVER_BIN"), shutil.which("redis-server")]
    candidates += ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RedisServerError(
        "redis-server not found (PATH, REDIS_SERVER_BIN, /usr/bin, /usr/local/bin). Tier-3 tests "
        "need a real Redis >= 7 built with TLS: `apt-get install redis-server` (CI's .ci/run does)."
    )


def _redis_cli_binary() -> str:
    server = Path(redis_server_binary())
    for candidate in (shutil.which("redis-cli"), str(server.with_name("redis-cli"))):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RedisServerError("redis-cli not found next to redis-server or on PATH")


# ---------------------------------------------------------------------------
# One redis-server process
# ---------------------------------------------------------------------------
_live: set[RedisServer] = set()


def live_servers() -> list[RedisServer]:
    """Servers started here whose process has not been reaped yet."""
    return sorted(_live, key=lambda s: s.port)


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        server.kill()


class RedisServer:
    """One redis-server process with its config, data and log in ``workdir``.

    TLS mode (``tls=``) is TLS-only: ``port 0`` and ``tls-port <port>``;
    ``port``/``address`` then name the TLS port. ``password`` sets
    ``requirepass`` and ``masterauth``; ``acl_users`` adds users with every
    right (``user NAME on >PASS ~* &* +@all``); anything else goes in
    ``extra``. ``auth`` is the (username, password) this helper's own client
    uses for readiness and admin commands (default: ``(None, password)``).

    Not thread-safe; drive it from one thread.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        tls: TlsMaterial | None = None,
        password: str | None = None,
        acl_users: Mapping[str, str] | None = None,
        auth: tuple[str | None, str] | None = None,
        extra: DirectiveSpec | None = None,
        port_picker: Callable[[], int] = free_port,
        ready_timeout: float = 10.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.tls = tls
        self.password = password
        self.acl_users = dict(acl_users or {})
        self.auth = auth if auth is not None else ((None, password) if password else None)
        self.extra = _normalize(extra)
        self.ready_timeout = ready_timeout
        self._port_picker = port_picker
        self._auto_port = port is None
        self._port = port if port is not None else port_picker()
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._started_once = False

    # -- identity -----------------------------------------------------------
    @property
    def host(self) -> str:
        return _LOCALHOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """The process exists and has not exited (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def config_path(self) -> Path:
        return self.workdir / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def __repr__(self) -> str:
        mode = "tls" if self.tls else "plain"
        return f"RedisServer({self.address}, {mode}, pid={self.pid})"

    # -- config -------------------------------------------------------------
    def directives(self) -> list[tuple[str, ...]]:
        """The full config this server starts with (regenerated on each start)."""
        base: list[tuple[str, ...]] = [
            ("bind", _LOCALHOST),
            ("protected-mode", "no"),
            ("daemonize", "no"),
            ("dir", str(self.workdir)),
            ("logfile", str(self.log_path)),
            ("save", ""),
            ("appendonly", "no"),
            # Replicas sync at once instead of waiting 5 s for more replicas.
            ("repl-diskless-sync-delay", "0"),
            # A primary whose replicas are gone must not hold SIGTERM for 10 s.
            ("shutdown-timeout", "1"),
            # DEBUG SLEEP etc. for latency tests (7.0 disables DEBUG by default).
            ("enable-debug-command", "local"),
        ]
        if self.tls:
            base += [
                ("port", "0"),
                ("tls-port", str(self._port)),
                ("tls-cert-file", str(self.tls.cert_file)),
                ("tls-key-file", str(self.tls.key_file)),
                ("tls-ca-cert-file", str(self.tls.ca_file)),
                ("tls-auth-clients", "no"),
            ]
        else:
            base.append(("port", str(self._port)))
        if self.password is not None:
            base += [("requirepass", self.password), ("masterauth", self.password)]
        base += [
            ("user", name, "on", f">{pw}", "~*", "&*", "+@all")
            for name, pw in self.acl_users.items()
        ]
        return base + self.extra

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for redis-py (sync or asyncio) to reach this server."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.auth is not None:
            kwargs["username"], kwargs["password"] = self.auth
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls.ca_file))
        return kwargs

    def client(self, **overrides: Any) -> redis.Redis:
        """A sync redis-py client: decoded replies, 2 s timeouts, no retries. Close it."""
        kwargs = self.client_kwargs()
        kwargs.update(
            decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0, retry=NO_RETRY
        )
        kwargs.update(overrides)
        return redis.Redis(**kwargs)

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of redis.log and of the process's stdout/stderr (config errors)."""
        parts = []
        for path in (self.workdir / "stdout.log", self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log output)"

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Start the process and wait until it answers PING (with TLS/auth as configured)."""
        if self.running:
            raise RedisServerError(f"{self!r} is already running")
        binary = redis_server_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # An auto-picked port can be taken by someone else between the pick and
        # the bind; pick again then, but never on a restart (the port is identity).
        attempts = 3 if (self._auto_port and not self._started_once) else 1
        for attempt in range(attempts):
            self.config_path.write_text(_render(self.directives()))
            self._spawn(binary)
            try:
                self._wait_ready()
            except BaseException as exc:
                self.kill()  # never leave a half-started process behind
                if not isinstance(exc, RedisServerError):
                    raise
                if attempt + 1 < attempts and "Address already in use" in self.log_tail(5):
                    self._port = self._port_picker()
                    continue
                raise
            break
        self._started_once = True

    def _spawn(self, binary: str) -> None:
        with (self.workdir / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                [binary, str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches pytest only, so
                # fixture teardown (not the signal) decides how servers stop.
                start_new_session=True,
            )
        self._paused = False
        _live.add(self)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        last: BaseException | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise RedisServerError(
                    f"redis-server for {self.address} exited with {code} during startup\n"
                    f"{self.log_tail()}"
                )
            try:
                with self.client(socket_timeout=0.5, socket_connect_timeout=0.5) as conn:
                    if conn.ping():
                        return
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                raise RedisServerError(
                    f"{self.address} rejects the helper's credentials "
                    f"(user {self.auth and self.auth[0]!r}): {exc}\n{self.log_tail()}"
                ) from exc
            except redis.RedisError as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise RedisServerError(
                    f"redis-server for {self.address} not answering PING after "
                    f"{self.ready_timeout}s (last error: {last!r})\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _send(self, sig: signal.Signals) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def _reap(self, timeout: float | None = None) -> None:
        """Wait for the process (SIGKILL after ``timeout``); always forgets it."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._send(signal.SIGKILL)
            proc.wait()
        finally:
            self._proc = None
            self._paused = False
            _live.discard(self)

    def terminate(self) -> None:
        """Send SIGTERM (after SIGCONT, a stopped process cannot act on it); don't wait."""
        if self._paused:
            self.resume()
        self._send(signal.SIGTERM)

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful shutdown: SIGTERM, wait up to ``timeout``, then SIGKILL. Always reaps."""
        if self._proc is None:
            return
        self.terminate()
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL and reap: the node vanishes without closing its connections cleanly."""
        self._send(signal.SIGKILL)
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: the node keeps its sockets open but answers nothing (a hung node)."""
        if self._proc is None:
            raise RedisServerError(f"{self!r} is not running")
        self._send(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        self._send(signal.SIGCONT)
        self._paused = False

    def restart(self) -> None:
        """Stop if running, then start on the same port and directory (nodes.conf is kept)."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# A cluster of redis-server processes
# ---------------------------------------------------------------------------
def _parse_info(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


class RedisCluster:
    """``primaries`` x (1 + ``replicas_per_primary``) nodes, created by redis-cli.

    With ``tls`` every node is TLS-only and the bus and replication run over
    TLS too (``tls-cluster yes``, ``tls-replication yes``). Node roles are
    never cached: ``primaries()``/``replicas()`` ask each running, unpaused
    node for its ``ROLE``, so they are right after a failover.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        tls: TlsMaterial | None = None,
        password: str | None = None,
        node_timeout_ms: int = 2000,
        extra: DirectiveSpec | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self.workdir = Path(workdir).resolve()
        self.tls = tls
        self.password = password
        self.primary_count = primaries
        self.replicas_per_primary = replicas_per_primary
        self.node_timeout_ms = node_timeout_ms
        self.ready_timeout = ready_timeout
        self.nodes: list[RedisServer] = []
        for index in range(primaries * (1 + replicas_per_primary)):
            port = free_cluster_port()
            node_extra = [
                ("cluster-enabled", "yes"),
                ("cluster-config-file", "nodes.conf"),
                ("cluster-node-timeout", str(node_timeout_ms)),
                ("cluster-announce-ip", _LOCALHOST),
                ("cluster-port", str(port + _CLUSTER_BUS_OFFSET)),
            ]
            if tls:
                node_extra += [("tls-cluster", "yes"), ("tls-replication", "yes")]
            self.nodes.append(
                RedisServer(
                    self.workdir / f"node-{index}",
                    port=port,
                    tls=tls,
                    password=password,
                    extra=node_extra + _normalize(extra),
                )
            )

    def __repr__(self) -> str:
        return f"RedisCluster({', '.join(n.address for n in self.nodes)})"

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def start(self) -> None:
        """Start every node, create the cluster, wait until it is healthy. Cleans up on failure."""
        try:
            for node in self.nodes:
                node.start()
            self._create()
            self.wait_healthy(self.ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _create(self) -> None:
        cmd = [_redis_cli_binary()]
        if self.tls:
            cmd += ["--tls", "--cacert", str(self.tls.ca_file)]
        cmd += ["--cluster", "create", *self.addresses]
        cmd += ["--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"]
        env = dict(os.environ)
        env.pop("REDISCLI_AUTH", None)
        if self.password is not None:
            env["REDISCLI_AUTH"] = self.password  # not in argv: no quoting, no ps leak
        try:
            done = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=60, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RedisServerError(f"redis-cli --cluster create hung: {exc.output!r}") from exc
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            tails = "\n".join(f"== {n.address}\n{n.log_tail(10)}" for n in self.nodes)
            raise RedisServerError(
                f"redis-cli --cluster create failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}\n{tails}"
            )

    # -- live views -----------------------------------------------------------
    def _reachable(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running and not n.paused]

    def roles(self) -> dict[str, list[Any]]:
        """``ROLE`` reply of each running, unpaused node that answers, by address."""
        out: dict[str, list[Any]] = {}
        for node in self._reachable():
            with contextlib.suppress(redis.RedisError), node.client(socket_timeout=1.0) as conn:
                out[node.address] = conn.execute_command("ROLE")
        return out

    def primaries(self) -> list[RedisServer]:
        """Reachable nodes whose ROLE is master, in ``nodes`` order."""
        roles = self.roles()
        return [n for n in self.nodes if roles.get(n.address, [None])[0] == "master"]

    def replicas(self) -> list[RedisServer]:
        """Reachable nodes whose ROLE is slave, in ``nodes`` order."""
        roles = self.roles()
        return [n for n in self.nodes if roles.get(n.address, [None])[0] == "slave"]

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """Reachable replicas that replicate from ``primary`` (by ROLE)."""
        roles = self.roles()
        return [
            n
            for n in self.nodes
            if (role := roles.get(n.address))
            and role[0] == "slave"
            and int(role[2]) == primary.port
        ]

    def node_for(self, address: str) -> RedisServer:
        """The node at ``host:port`` (a ``CLUSTER NODES`` ``ip:port@bus`` form is accepted)."""
        port = int(address.split("@", 1)[0].rsplit(":", 1)[1])
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node at {address} in {self!r}")

    def node_health(self, node: RedisServer) -> dict[str, str]:
        """CLUSTER INFO merged with INFO replication for one node."""
        with node.client(socket_timeout=1.0) as conn:
            info = _parse_info(conn.execute_command("CLUSTER", "INFO"))
            info.update({k: str(v) for k, v in conn.info("replication").items()})
        return info

    def _problems(self) -> list[str]:
        total = len(self.nodes)
        problems = []
        reachable = self._reachable()
        for node in reachable:
            try:
                info = self.node_health(node)
            except redis.RedisError as exc:
                problems.append(f"{node.address}: {exc!r}")
                continue
            if info.get("cluster_state") != "ok":
                problems.append(f"{node.address}: cluster_state={info.get('cluster_state')}")
            if info.get("cluster_slots_ok") != str(_CLUSTER_SLOTS):
                problems.append(f"{node.address}: cluster_slots_ok={info.get('cluster_slots_ok')}")
            if info.get("cluster_known_nodes") != str(total):
                problems.append(f"{node.address}: knows {info.get('cluster_known_nodes')} nodes")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                link = info.get("master_link_status")
                problems.append(f"{node.address}: master_link_status={link}")
        masters = sum(1 for role in self.roles().values() if role[0] == "master")
        if masters != self.primary_count:
            problems.append(f"{masters} reachable primaries, want {self.primary_count}")
        return problems

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every reachable node sees a complete, ok cluster.

        That is: ``cluster_state:ok``, ``cluster_slots_ok:16384``, knows all
        nodes, every replica has ``master_link_status:up``, and exactly
        ``primaries`` reachable nodes are primaries. Stopped and paused nodes
        are not asked (so this also works after a kill + failover).
        """
        state: dict[str, list[str]] = {"problems": ["not checked yet"]}

        def healthy() -> bool:
            state["problems"] = self._problems()
            return not state["problems"]

        try:
            wait_for(healthy, timeout, 0.2, description="cluster healthy")
        except ConditionTimeoutError as exc:
            raise ConditionTimeoutError(
                f"{self!r} not healthy after {timeout}s: {'; '.join(state['problems'])}"
            ) from exc

    def cluster_client(self, **overrides: Any) -> redis.cluster.RedisCluster:
        """A sync redis-py cluster client seeded with the first reachable node. Close it."""
        seed = (self._reachable() or self.nodes)[0]
        kwargs = seed.client_kwargs()
        kwargs.update(decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0)
        kwargs.update(overrides)
        return redis.cluster.RedisCluster(**kwargs)

    def stop(self) -> None:
        """Stop every node: SIGTERM all at once, then reap each (SIGKILL after 5 s)."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node._reap(timeout=5.0)

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# TCP proxy with injectable resets, latency and black-holing
# ---------------------------------------------------------------------------
def _send_rst(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER (1, 0): the kernel sends RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ResetProxy:
    """Forwards 127.0.0.1:<port> to ``target``; faults are switchable at run time.

    Modes (they combine; ``passthrough()`` clears them all):

    - ``reset_next(n)``: the next ``n`` client requests get a TCP RST. A
      "request" is bytes arriving from a client, on a new connection (the
      handshake or first command) or on a pooled one, so a client that has
      connected sees "connection reset by peer" mid-flight.
    - ``reset_all(True)``: every request gets a RST until switched off.
    - ``delay(seconds)``: each server->client chunk is held that long.
    - ``blackhole(True)``: read what clients send and answer nothing (new
      connections are not forwarded; replies in flight are dropped).

    Runs in the event loop that calls ``start()``; use ``ThreadedResetProxy``
    from sync code or when the client runs in another process.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.connections_accepted = 0
        self.resets_sent = 0
        self._reset_budget = 0
        self._reset_all = False
        self._delay = 0.0
        self._blackhole = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def host(self) -> str:
        return _LOCALHOST

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("ResetProxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def active_connections(self) -> int:
        return len(self._tasks)

    # -- modes ----------------------------------------------------------------
    def passthrough(self) -> None:
        """Forward faithfully: clear every fault mode."""
        self._reset_budget, self._reset_all, self._delay, self._blackhole = 0, False, 0.0, False

    def reset_next(self, n: int = 1) -> None:
        self._reset_budget = n

    def reset_all(self, enabled: bool = True) -> None:
        self._reset_all = enabled

    def delay(self, seconds: float) -> None:
        self._delay = seconds

    def blackhole(self, enabled: bool = True) -> None:
        self._blackhole = enabled

    def _take_reset(self) -> bool:
        if self._reset_all:
            return True
        if self._reset_budget > 0:
            self._reset_budget -= 1
            return True
        return False

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, _LOCALHOST, 0)

    async def stop(self) -> None:
        """Stop listening, abort every connection and wait for the handlers."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ResetProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- forwarding -----------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        pump: asyncio.Task[None] | None = None
        try:
            if not self._blackhole:
                upstream, pump = await self._connect(writer)
            while data := await reader.read(65536):
                if self._take_reset():
                    self.resets_sent += 1
                    _send_rst(writer)
                    return
                if self._blackhole:
                    continue
                if upstream is None:
                    upstream, pump = await self._connect(writer)
                upstream.write(data)
                await upstream.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # either side went away; tear down both
        finally:
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            for w in (upstream, writer):
                if w is not None:
                    w.close()
                    self._writers.discard(w)
            self._tasks.discard(task)

    async def _connect(
        self, client: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamWriter, asyncio.Task[None]]:
        """Open the upstream leg (a refused upstream resets the client)."""
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _send_rst(client)
            raise
        self._writers.add(up_writer)
        return up_writer, asyncio.create_task(self._pump_back(up_reader, client))

    async def _pump_back(
        self, up_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await up_reader.read(65536):
                if self._delay > 0:
                    await asyncio.sleep(self._delay)
                if self._blackhole or client.is_closing():
                    continue
                client.write(data)
                await client.drain()
        except OSError:
            pass
        # Upstream closed: pass the close on, unless we already reset the client.
        if not client.is_closing():
            client.close()


class ThreadedResetProxy:
    """``ResetProxy`` on its own event loop thread, with the same methods, all sync.

    Mode changes are applied on the proxy's loop and have taken effect when
    the call returns. Use as a context manager or call ``start``/``stop``.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._proxy = ResetProxy(target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"reset-proxy->{target_port}", daemon=True
        )

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=15)

    def _apply(self, fn: Callable[..., None], *args: Any) -> None:
        async def apply() -> None:
            fn(*args)

        self._call(apply())

    def start(self) -> None:
        self._thread.start()
        self._call(self._proxy.start())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._proxy.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> ThreadedResetProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._proxy.host

    @property
    def port(self) -> int:
        return self._proxy.port

    @property
    def address(self) -> str:
        return self._proxy.address

    @property
    def connections_accepted(self) -> int:
        return self._proxy.connections_accepted

    @property
    def resets_sent(self) -> int:
        return self._proxy.resets_sent

    @property
    def active_connections(self) -> int:
        return self._proxy.active_connections

    def passthrough(self) -> None:
        self._apply(self._proxy.passthrough)

    def reset_next(self, n: int = 1) -> None:
        self._apply(self._proxy.reset_next, n)

    def reset_all(self, enabled: bool = True) -> None:
        self._apply(self._proxy.reset_all, enabled)

    def delay(self, seconds: float) -> None:
        self._apply(self._proxy.delay, seconds)

    def blackhole(self, enabled: bool = True) -> None:
        self._apply(self._proxy.blackhole, enabled)
