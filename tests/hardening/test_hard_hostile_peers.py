"""Hostile and broken peers: each is a failed check with a SPEC reason, never a crash.

One depwatch watches several bad "Redis nodes" at once (standalone mode takes a list of
addresses): garbage instead of RESP, a reply cut in the middle, a reply of the wrong
type, garbage for INFO only, an HTTP server, TLS with an expired certificate or
another name; and a collector whose gRPC port speaks HTTP/1.1 while its HTTP port
streams an endless body. Throughout, /metrics answers, the loop keeps cycling, no
connection is left open or reused after an error, and no task is left behind.

The reply cut in the middle (``+PO`` then FIN) is reported as ``connection_reset``:
redis-py sees the server close the connection mid-reply ("Connection closed by
server"), which is how depwatch classifies a peer hanging up (SPEC allows either
``connection_reset`` or ``protocol``; the test pins the current one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from hostile_peers import (
    RespServer,
    cut_mid_reply,
    garbage_always,
    garbage_info,
    healthy,
    make_tls_peer,
    wrong_type_to_ping,
)
from label_rules import check_labels
from support.depwatch_harness import Harness, Samples, fast_env, running_depwatch, series, value

pytestmark = pytest.mark.asyncio

class Servers:
    def __init__(self) -> None:
        self.resp: list[RespServer] = []
        self.runners: list[web.AppRunner] = []

    async def resp_server(self, behaviour, **kwargs) -> RespServer:  # type: ignore[no-untyped-def]
        server = await RespServer(behaviour, **kwargs).start()
        self.resp.append(server)
        return server

    async def http(self, handler) -> int:  # type: ignore[no-untyped-def]
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        for server in self.resp:
            await server.stop()
        for runner in self.runners:
            await runner.cleanup()


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[Servers]:
    made = Servers()
    try:
        yield made
    finally:
        await made.stop()


async def _hello(_: web.Request) -> web.Response:
    return web.Response(text="<html>not redis</html>", content_type="text/html")


async def _endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-protobuf"})
    await response.prepare(request)
    chunk = b"\x0a" * 16384
    for _ in range(4096):  # at most 64 MiB, unless the client hangs up first (it must)
        await response.write(chunk)
    return response


def _node_reason(m: Samples, node: str) -> set[str]:
    return {dict(labels)["reason"] for labels, v in
            series(m, "redis_health_check_failed_total").items()
            if dict(labels)["node"] == node and v > 0}  # fmt: skip


async def _watch(dw: Harness, done, *, within: float) -> Samples:  # type: ignore[no-untyped-def]
    """Poll until ``done``; every scrape must be fast and /healthz stays 200."""
    deadline = time.monotonic() + within
    while True:
        started = time.monotonic()
        m = await dw.metrics()
        assert time.monotonic() - started < 1.0, "/metrics was slow"
        assert (await dw.client.get("/healthz")).status == 200
        if done(m):
            return m
        assert time.monotonic() < deadline, f"not done within {within}s"
        await asyncio.sleep(0.1)


async def test_hostile_resp_and_http_peers(servers: Servers) -> None:
    garbage = await servers.resp_server(garbage_always)
    cut = await servers.resp_server(cut_mid_reply)
    wrong = await servers.resp_server(wrong_type_to_ping)
    bad_info = await servers.resp_server(garbage_info)
    http_port = await servers.http(_hello)
    http = f"127.0.0.1:{http_port}"
    nodes = [garbage.address, cut.address, wrong.address, bad_info.address, http]
    tasks_before = len(asyncio.all_tasks())
    async with running_depwatch(fast_env(REDIS_ADDRESS=",".join(nodes))) as dw:
        m = await _watch(dw, lambda m: all((value(m, "redis_health_checks_total", node=n) or 0)
                                           >= 4 for n in nodes), within=20)  # fmt: skip
        status = {n["node"]: n for n in (await dw.status())["redis"]["nodes"]}
        tasks_during = len(asyncio.all_tasks())
    # the peers' own handler tasks may still be seeing our last disconnects: a bounded wait
    for _ in range(40):
        tasks_after = len(asyncio.all_tasks())
        if tasks_after <= tasks_before:
            break
        await asyncio.sleep(0.05)

    assert _node_reason(m, garbage.address) == {"protocol"}
    assert _node_reason(m, cut.address) == {"connection_reset"}
    assert _node_reason(m, wrong.address) == {"protocol"}
    assert _node_reason(m, http) == {"protocol"}
    for node in (garbage.address, cut.address, wrong.address, http):
        assert value(m, "redis_health_check_up", node=node) == 0
        assert status[node]["up"] is False and status[node]["attempts"] == 3
    # INFO is best effort: the check passes, the poisoned connection is dropped each time
    assert value(m, "redis_health_check_up", node=bad_info.address) == 1
    assert value(m, "redis_node_connected_clients", node=bad_info.address) is None
    checks = int(value(m, "redis_health_checks_total", node=bad_info.address) or 0)
    assert bad_info.accepted >= checks - 1, (bad_info.accepted, checks)
    check_labels(m, nodes=nodes)
    # every failed attempt discarded its connection: nothing left open at the peers
    for server in (garbage, cut, wrong, bad_info):
        assert server.accepted >= 3
        assert server.open <= 1, (server.address, server.open)
    assert tasks_during <= tasks_before + 25, (tasks_before, tasks_during)
    assert tasks_after <= tasks_before, (tasks_before, tasks_after,
                                         [repr(t.get_coro()) for t in asyncio.all_tasks()])


async def test_tls_expired_and_wrong_name_are_tls(servers: Servers, tmp_path: Path) -> None:
    peer = make_tls_peer(tmp_path)
    expired = await servers.resp_server(healthy, ssl_context=peer.expired)
    wrong_name = await servers.resp_server(healthy, ssl_context=peer.wrong_name)
    nodes = [expired.address, wrong_name.address]
    env = fast_env(REDIS_ADDRESS=",".join(nodes), REDIS_TLS_ENABLED="true",
                   REDIS_TLS_CA_FILE=str(peer.ca_file))  # fmt: skip
    async with running_depwatch(env) as dw:
        m = await _watch(dw, lambda m: all((value(m, "redis_health_checks_total", node=n) or 0)
                                           >= 2 for n in nodes), within=15)  # fmt: skip
        status = {n["node"]: n for n in (await dw.status())["redis"]["nodes"]}
    for node in nodes:
        assert _node_reason(m, node) == {"tls"}
        assert value(m, "redis_health_check_up", node=node) == 0
    assert "expired" in (status[expired.address]["error"] or "").lower()
    assert expired.commands == [] and wrong_name.commands == [], "a command crossed bad TLS"
    check_labels(m, nodes=nodes)


async def test_collector_http_on_grpc_port_and_endless_body(servers: Servers) -> None:
    grpc_port = await servers.http(_hello)
    http_port = await servers.http(_endless)
    env = fast_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{grpc_port}",
                   OTEL_EXPORTER_OTLP_PROTOCOL="grpc", DEPWATCH_OTLP_GRPC_PORT=str(grpc_port),
                   DEPWATCH_OTLP_HTTP_PORT=str(http_port))  # fmt: skip
    async with running_depwatch(env) as dw:
        m = await _watch(dw, lambda m: sum(v for v in series(m, "otlp_export_probes_total")
                                           .values()) >= 4, within=15)  # fmt: skip
        await asyncio.sleep(1.0)  # a few more cycles against the endless body
        m = await dw.metrics()
    ups = series(m, "otlp_export_probe_up")
    assert ups and set(ups.values()) == {0.0}
    failed = {(dict(labels)["protocol"], dict(labels)["reason"])
              for labels, v in series(m, "otlp_export_probe_failed_total").items() if v > 0}
    assert failed == {("grpc", "protocol"), ("http/protobuf", "protocol")}, failed
    check_labels(m)
