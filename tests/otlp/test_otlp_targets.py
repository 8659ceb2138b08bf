"""The probe plan (pure) and host resolution (with an injected resolver)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest

from exporter.model import Reason
from exporter.otlp_config import OtlpSettings, parse_otlp_env
from exporter.otlp_targets import (
    MAX_ADDRESSES,
    OtlpTarget,
    build_plan,
    probe_collector,
    resolve,
)


def settings(endpoint: str, protocol: str, **extra: str) -> OtlpSettings:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    parsed = parse_otlp_env({**env, **extra})
    assert parsed is not None
    return parsed


def keys(plan: tuple[OtlpTarget, ...]) -> list[tuple[str, str, bool, str]]:
    return [(t.endpoint, t.protocol, t.tls, t.path) for t in plan]


def test_plan_configured_port_is_one_of_the_standard_ports() -> None:
    plan = build_plan(
        settings("http://c:4317", "grpc"), ["10.0.0.1", "10.0.0.2"], grpc_port=4317,
        http_port=4318,
    )  # fmt: skip
    assert keys(plan) == [
        ("10.0.0.1:4317", "grpc", False, ""),
        ("10.0.0.1:4318", "http/protobuf", False, "/v1/metrics"),
        ("10.0.0.2:4317", "grpc", False, ""),
        ("10.0.0.2:4318", "http/protobuf", False, "/v1/metrics"),
    ]
    assert [t.port for t in plan] == [4317, 4318, 4317, 4318]


def test_plan_adds_the_configured_protocol_on_the_configured_port() -> None:
    plan = build_plan(settings("http://c:4318", "grpc"), ["10.0.0.1"], grpc_port=4317,
                      http_port=4318)  # fmt: skip
    assert keys(plan) == [
        ("10.0.0.1:4317", "grpc", False, ""),
        ("10.0.0.1:4318", "http/protobuf", False, "/v1/metrics"),
        ("10.0.0.1:4318", "grpc", False, ""),
    ]
    custom = build_plan(settings("https://c:9000/otlp/", "http/json"), ["::1"], grpc_port=4317,
                        http_port=4318)  # fmt: skip
    assert keys(custom) == [
        ("[::1]:4317", "grpc", True, ""),
        ("[::1]:4318", "http/json", True, "/otlp/v1/metrics"),
        ("[::1]:9000", "http/json", True, "/otlp/v1/metrics"),
    ]


def test_plan_tls_follows_what_each_exporter_would_do() -> None:
    """The incident's scheme-less grpc endpoint: gRPC uses TLS, HTTP needs http://."""
    plan = build_plan(settings("collector:4317", "grpc"), ["10.0.0.1"], grpc_port=4317,
                      http_port=4318)  # fmt: skip
    assert [(t.protocol, t.tls) for t in plan] == [("grpc", True), ("http/protobuf", False)]


def test_plan_http_port_uses_json_only_when_configured() -> None:
    plan = build_plan(settings("http://c:4317", "grpc"), ["10.0.0.1"], grpc_port=4317,
                      http_port=4318)  # fmt: skip
    assert {t.protocol for t in plan} == {"grpc", "http/protobuf"}


def fake_getaddrinfo(addresses: list[str] | Exception, calls: list[str] | None = None) -> Any:
    async def getaddrinfo(host: str, port: Any, **_: Any) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append(host)
        if isinstance(addresses, Exception):
            raise addresses
        out = []
        for a in addresses:
            family = socket.AF_INET6 if ":" in a else socket.AF_INET
            sockaddr = (a, 0, 0, 0) if family == socket.AF_INET6 else (a, 0)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    return getaddrinfo


@pytest.mark.asyncio
async def test_resolve_dedups_sorts_and_caps() -> None:
    many = [f"10.0.0.{i}" for i in range(40, 0, -1)] + ["10.0.0.5", "fd00::2", "fd00::1"]
    resolution = await resolve("collector", time_limit=1, getaddrinfo=fake_getaddrinfo(many))
    assert resolution.ok
    assert len(resolution.addresses) == MAX_ADDRESSES
    assert resolution.addresses[:3] == ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    reordered = await resolve(
        "collector", time_limit=1, getaddrinfo=fake_getaddrinfo(list(reversed(many)))
    )
    assert reordered.addresses == resolution.addresses

    mixed = await resolve(
        "collector", time_limit=1, getaddrinfo=fake_getaddrinfo(["fd00::1", "10.0.0.9"])
    )
    assert mixed.addresses == ("10.0.0.9", "fd00::1")


@pytest.mark.asyncio
async def test_ip_literals_are_not_resolved() -> None:
    calls: list[str] = []
    resolution = await resolve("::1", time_limit=1, getaddrinfo=fake_getaddrinfo([], calls))
    assert resolution.addresses == ("::1",)
    assert calls == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "failure",
    [socket.gaierror(socket.EAI_NONAME, "Name or service not known"), []],
)
async def test_resolution_failure(failure: Any) -> None:
    resolution = await resolve("nope", time_limit=1, getaddrinfo=fake_getaddrinfo(failure))
    assert not resolution.ok
    assert resolution.addresses == ()
    assert resolution.error


@pytest.mark.asyncio
async def test_resolution_timeout() -> None:
    async def hang(*_: Any, **__: Any) -> list[tuple[Any, ...]]:
        await asyncio.sleep(10)
        return []

    resolution = await resolve("slow", time_limit=0.05, getaddrinfo=hang)
    assert resolution.error == "name resolution timed out"


@pytest.mark.asyncio
async def test_dns_failure_fails_every_planned_probe(http_session: aiohttp.ClientSession) -> None:
    cfg = settings("http://collector.invalid:4318", "grpc")
    fail = fake_getaddrinfo(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    outcome = await probe_collector(
        cfg, grpc_port=4317, http_port=4318, session=http_session, getaddrinfo=fail
    )
    assert [(r.endpoint, r.protocol, r.reason) for r in outcome.results] == [
        ("collector.invalid:4317", "grpc", Reason.DNS),
        ("collector.invalid:4318", "http/protobuf", Reason.DNS),
        ("collector.invalid:4318", "grpc", Reason.DNS),
    ]
    assert not any(r.ok for r in outcome.results)

    # with addresses seen before, the same series go down
    again = await probe_collector(
        cfg, grpc_port=4317, http_port=4318, session=http_session, getaddrinfo=fail,
        previous_addresses=("10.0.0.7",),
    )  # fmt: skip
    assert {r.endpoint for r in again.results} == {"10.0.0.7:4317", "10.0.0.7:4318"}
    assert {r.reason for r in again.results} == {Reason.DNS}


@pytest.mark.asyncio
async def test_real_resolution_of_localhost() -> None:
    resolution = await resolve("localhost", time_limit=5)
    assert resolution.ok
    assert "127.0.0.1" in resolution.addresses or "::1" in resolution.addresses
