"""A port that refused the last probe is re-tried with a bare TCP connect first; the
full probe runs only once the port accepts (real sockets and receivers on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import aiohttp
import pytest
from support.otlp_receivers import HOST, GrpcReceiver, closed_port

from exporter.config import load_settings
from exporter.logs import get_logger
from exporter.model import OtlpProbeResult, Reason
from exporter.otlp_config import OtlpSettings, parse_otlp_env
from exporter.otlp_cycle import OtlpPart
from exporter.otlp_targets import OtlpTarget, bare_connect_failure, probe_collector
from exporter.probes import otlp_grpc


def grpc_settings(port: int) -> OtlpSettings:
    parsed = parse_otlp_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{port}",
                             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})  # fmt: skip
    assert parsed is not None
    return parsed


@pytest.fixture
def grpc_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the full gRPC probes (the real one still runs)."""
    calls: list[str] = []
    real = otlp_grpc.probe

    async def counting(target: OtlpTarget, *args: Any, **kwargs: Any) -> OtlpProbeResult:
        calls.append(target.endpoint)
        return await real(target, *args, **kwargs)

    monkeypatch.setattr(otlp_grpc, "probe", counting)
    return calls


@pytest.mark.asyncio
async def test_bare_connect_refused_on_a_closed_port_and_nothing_on_a_listener() -> None:
    with closed_port() as closed, socket.create_server((HOST, 0)) as listener:
        listener.settimeout(5)
        refused = OtlpTarget(HOST, closed.getsockname()[1], "grpc", tls=False)
        accepted = OtlpTarget(HOST, listener.getsockname()[1], "grpc", tls=False)
        assert await bare_connect_failure(refused, 1.0) == Reason.CONNECTION_REFUSED
        assert await bare_connect_failure(accepted, 1.0) is None
        peer, _ = listener.accept()
        with peer:
            peer.settimeout(5)
            assert peer.recv(1) == b""  # closed at once, nothing sent


@contextmanager
def full_backlog_port() -> Iterator[int]:
    """A listener whose accept queue is full: further SYNs are dropped, so a connect
    hangs (a firewalled port, on 127.0.0.1)."""
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind((HOST, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):  # more than a backlog of 0 holds
            held = stack.enter_context(socket.socket())
            held.setblocking(False)
            held.connect_ex((HOST, port))
        time.sleep(0.1)  # let the handshakes that fit complete
        yield port


@pytest.mark.asyncio
async def test_bare_connect_times_out_on_a_port_that_drops_syns() -> None:
    with full_backlog_port() as port:
        target = OtlpTarget(HOST, port, "grpc", tls=False)
        assert await bare_connect_failure(target, 0.3) == Reason.TIMEOUT


@pytest.mark.asyncio
async def test_a_refused_port_that_starts_dropping_syns_times_out_once(
    http_session: aiohttp.ClientSession, grpc_calls: list[str]
) -> None:
    """The connect's timeout is the probe's: no full probe waits out a second one."""
    with full_backlog_port() as port, closed_port() as closed_http:
        target = f"{HOST}:{port}"
        prior = OtlpProbeResult(target, "grpc", False, Reason.CONNECTION_REFUSED, "refused",
                                port=port)  # fmt: skip
        outcome = await probe_collector(
            grpc_settings(port), grpc_port=port, http_port=closed_http.getsockname()[1],
            session=http_session, time_limit=0.3, refused_before={(target, "grpc"): prior},
        )  # fmt: skip
    grpc_result = next(r for r in outcome.results if r.protocol == "grpc")
    assert grpc_result.reason == Reason.TIMEOUT and "TCP connect timed out" in str(
        grpc_result.error)
    assert grpc_calls == []


@pytest.mark.asyncio
async def test_refused_port_is_not_probed_again_while_it_refuses(
    http_session: aiohttp.ClientSession, grpc_calls: list[str]
) -> None:
    with closed_port() as closed, closed_port() as closed_http:
        port, http_port = closed.getsockname()[1], closed_http.getsockname()[1]
        cfg = grpc_settings(port)
        first = await probe_collector(cfg, grpc_port=port, http_port=http_port,
                                      session=http_session, time_limit=2.0)  # fmt: skip
        assert {(r.protocol, r.reason) for r in first.results} == {
            ("grpc", Reason.CONNECTION_REFUSED), ("http/protobuf", Reason.CONNECTION_REFUSED)}
        assert grpc_calls == [f"{HOST}:{port}"]
        refused = {(r.endpoint, r.protocol): r for r in first.results}
        second = await probe_collector(cfg, grpc_port=port, http_port=http_port,
                                       session=http_session, time_limit=2.0,
                                       refused_before=refused)  # fmt: skip
        assert second.results == first.results  # the same failure, confirmed by a connect
        assert grpc_calls == [f"{HOST}:{port}"]  # no second channel


@pytest.mark.asyncio
async def test_a_port_that_starts_accepting_gets_the_full_probe_in_the_same_cycle(
    http_session: aiohttp.ClientSession, grpc_calls: list[str]
) -> None:
    receiver = GrpcReceiver()
    port = await receiver.start()
    try:
        cfg = grpc_settings(port)
        target = f"{HOST}:{port}"
        prior = OtlpProbeResult(target, "grpc", False, Reason.CONNECTION_REFUSED, "refused",
                                port=port)  # fmt: skip
        with closed_port() as closed_http:
            outcome = await probe_collector(
                cfg, grpc_port=port, http_port=closed_http.getsockname()[1],
                session=http_session, time_limit=2.0, refused_before={(target, "grpc"): prior},
            )  # fmt: skip
        grpc_result = next(r for r in outcome.results if r.protocol == "grpc")
        assert grpc_result.ok and grpc_calls == [target]
        assert receiver.requests == 1  # still exactly one request per probe
    finally:
        await receiver.stop()


@pytest.mark.asyncio
async def test_otlp_part_uses_the_bare_connect_from_the_second_cycle(
    grpc_calls: list[str],
) -> None:
    with closed_port() as closed, closed_port() as closed_http:
        port, http_port = closed.getsockname()[1], closed_http.getsockname()[1]
        settings = load_settings({
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "DEPWATCH_OTLP_GRPC_PORT": str(port),
            "DEPWATCH_OTLP_HTTP_PORT": str(http_port),
        })  # fmt: skip
        assert settings.otlp is not None
        part = OtlpPart(settings, settings.otlp, log=get_logger())
        try:
            for _ in range(3):
                out = await part(None)
                reasons = {r.reason for r in out["otlp_results"]}  # type: ignore[attr-defined]
                assert reasons == {Reason.CONNECTION_REFUSED}
        finally:
            await part.close()
        assert grpc_calls == [f"{HOST}:{port}"]  # once, then bare connects


_LAZY_GRPC = """
import asyncio, json, sys
from exporter.otlp_config import parse_otlp_env
from exporter.otlp_targets import probe_collector
from exporter.probes.otlp_http import new_session

async def main(refused, http, listening):
    def cfg(port):
        return parse_otlp_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                               "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    out = {}
    async with new_session() as session:
        for cycle in (1, 2):
            probe = await probe_collector(cfg(refused), grpc_port=refused, http_port=http,
                                          session=session, time_limit=2.0)
            out[f"refused_{cycle}"] = [[r.protocol, r.reason, r.error] for r in probe.results]
            out[f"grpc_loaded_{cycle}"] = "grpc" in sys.modules
        probe = await probe_collector(cfg(listening), grpc_port=listening, http_port=http,
                                      session=session, time_limit=1.0)
        out["accepting"] = [[r.protocol, r.reason] for r in probe.results]
        out["grpc_loaded_after"] = "grpc" in sys.modules
    print(json.dumps(out))

asyncio.run(main(*map(int, sys.argv[1:])))
"""


def test_grpc_is_not_imported_while_the_grpc_port_refuses() -> None:
    """In a fresh interpreter (this one has grpc loaded): a refused gRPC port is known
    from a bare connect, grpc stays out of memory; a port that accepts gets the full
    gRPC probe, which loads it."""
    with (
        closed_port() as closed, closed_port() as closed_http,
        socket.create_server((HOST, 0)) as silent,  # accepts, never speaks HTTP/2
    ):  # fmt: skip
        ports = [closed.getsockname()[1], closed_http.getsockname()[1],
                 silent.getsockname()[1]]  # fmt: skip
        run = subprocess.run([sys.executable, "-c", _LAZY_GRPC, *map(str, ports)],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.splitlines()[-1])  # after any log lines
    for cycle in (1, 2):
        assert sorted(tuple(r[:2]) for r in out[f"refused_{cycle}"]) == [
            ("grpc", Reason.CONNECTION_REFUSED), ("http/protobuf", Reason.CONNECTION_REFUSED)]
        assert out[f"grpc_loaded_{cycle}"] is False
    grpc_error = next(r[2] for r in out["refused_1"] if r[0] == "grpc")
    assert "no request sent" in grpc_error
    assert out["grpc_loaded_after"] is True
    grpc_reason = next(r[1] for r in out["accepting"] if r[0] == "grpc")
    assert grpc_reason in (Reason.TIMEOUT, Reason.PROTOCOL)  # it spoke gRPC to a mute peer
