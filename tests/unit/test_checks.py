"""run_check: attempts, backoff, auth never retried, reasons recorded (fake probe)."""

import asyncio

import pytest
from redis import exceptions as rx

from exporter.checks import run_check
from exporter.model import NodeInfo, Reason


class Policy:
    health_check_attempts = 3
    health_check_timeout = 0.05
    health_check_backoff = 0.5


class FakeProbe:
    address = "n:1"

    def __init__(self, outcomes: list[object]) -> None:
        self.outcomes = list(outcomes)
        self.pings = 0

    async def ping(self) -> float:
        self.pings += 1
        outcome = self.outcomes.pop(0)
        if outcome == "hang":
            await asyncio.sleep(10)
        if isinstance(outcome, BaseException):
            raise outcome
        return float(outcome)  # type: ignore[arg-type]

    async def info(self) -> NodeInfo:
        return NodeInfo(connected_clients=1)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.mark.asyncio
async def test_first_attempt_succeeds() -> None:
    probe, sleep = FakeProbe([0.001]), Sleeps()
    check = await run_check(probe, Policy(), wall_clock=lambda: 42.0, sleep=sleep)
    assert check.ok and check.attempts == 1 and check.attempt_failures == ()
    assert check.rtt_seconds == 0.001 and check.info == NodeInfo(connected_clients=1)
    assert sleep.calls == [] and check.finished_at == 42.0


@pytest.mark.asyncio
async def test_reset_recovered_by_retry() -> None:
    probe, sleep = FakeProbe([ConnectionResetError(), 0.002]), Sleeps()
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=sleep)
    assert check.ok and check.attempts == 2
    assert check.attempt_failures == (Reason.CONNECTION_RESET,) and check.reason is None
    assert sleep.calls == [0.5]


@pytest.mark.asyncio
async def test_all_attempts_fail_reason_of_last() -> None:
    probe = FakeProbe([ConnectionResetError(), ConnectionRefusedError(), "hang"])
    sleep = Sleeps()
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=sleep)
    assert not check.ok and check.attempts == 3
    assert check.attempt_failures == (Reason.CONNECTION_RESET, Reason.CONNECTION_REFUSED,
                                      Reason.TIMEOUT)  # fmt: skip
    assert check.reason is Reason.TIMEOUT and sleep.calls == [0.5, 0.5]
    assert check.wants_topology_refresh


@pytest.mark.asyncio
async def test_auth_failure_not_retried() -> None:
    probe = FakeProbe([rx.AuthenticationError("invalid password"), 0.001, 0.001])
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=Sleeps())
    assert not check.ok and probe.pings == 1 and check.reason is Reason.AUTH


@pytest.mark.asyncio
async def test_secret_redacted_from_error() -> None:
    probe = FakeProbe([rx.ResponseError("WRONGPASS pw=hunter2")] )
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=Sleeps(),
                            secrets=("hunter2",))  # fmt: skip
    assert check.error is not None and "hunter2" not in check.error


class OldServerConnection:
    """Answers like Redis 6: INFO takes one section at most."""

    is_connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []

    async def send_command(self, *args: str, check_health: bool = True) -> None:
        self.sent.append(args)

    async def read_response(self) -> str:
        if len(self.sent[-1]) > 2:
            raise rx.ResponseError("ERR syntax error")
        return "# Clients\r\nconnected_clients:4\r\nmaxclients:100\r\n"


@pytest.mark.asyncio
async def test_info_sections_fall_back_to_plain_info_on_old_servers() -> None:
    from exporter.config import load_settings
    from exporter.probes.redis import RedisNodeProbe

    probe = RedisNodeProbe("n:1", load_settings({}), credentials=None)
    conn = OldServerConnection()
    probe._conn = conn  # type: ignore[assignment]  # a fake connection: no network here
    first = await probe.info()
    second = await probe.info()
    assert first == second == NodeInfo(connected_clients=4, maxclients=100)
    assert conn.sent == [("INFO", "clients", "stats", "replication"), ("INFO",), ("INFO",)]
