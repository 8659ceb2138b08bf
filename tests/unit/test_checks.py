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
    """PING outcomes in order (a float, an exception or "hang"); INFO likewise, and
    answering when its outcomes run out. ``calls`` keeps the commands in order."""

    address = "n:1"

    def __init__(self, outcomes: list[object], info: list[object] | None = None) -> None:
        self.outcomes = list(outcomes)
        self.info_outcomes = list(info or [])
        self.pings = 0
        self.calls: list[str] = []

    async def ping(self) -> float:
        self.pings += 1
        self.calls.append("PING")
        return float(await _play(self.outcomes.pop(0)))  # type: ignore[arg-type]

    async def info(self) -> NodeInfo:
        self.calls.append("INFO")
        if self.info_outcomes:
            await _play(self.info_outcomes.pop(0))
        return NodeInfo(connected_clients=1)


async def _play(outcome: object) -> object:
    if outcome == "hang":
        await asyncio.sleep(10)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


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
async def test_first_attempt_sends_info_then_ping_and_no_second_info() -> None:
    probe = FakeProbe([0.001])
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=Sleeps())
    assert probe.calls == ["INFO", "PING"] and check.info == NodeInfo(connected_clients=1)


@pytest.mark.asyncio
async def test_without_info_only_pings() -> None:
    probe = FakeProbe([0.001])
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=Sleeps(),
                            with_info=False)  # fmt: skip
    assert probe.calls == ["PING"] and check.ok and check.info is None


@pytest.mark.asyncio
async def test_info_refused_by_server_leaves_the_check_to_ping() -> None:
    probe = FakeProbe([0.001], info=[rx.NoPermissionError("NOPERM no INFO for you")])
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=Sleeps())
    assert check.ok and check.attempts == 1 and check.attempt_failures == ()
    assert check.info is None and probe.calls == ["INFO", "PING"]


@pytest.mark.asyncio
async def test_reset_during_info_fails_the_attempt_and_info_is_read_after_the_retry() -> None:
    probe = FakeProbe([0.002], info=[ConnectionResetError()])
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=Sleeps())
    assert check.ok and check.attempts == 2
    assert check.attempt_failures == (Reason.CONNECTION_RESET,)
    assert probe.calls == ["INFO", "PING", "INFO"] and check.info is not None


@pytest.mark.asyncio
async def test_hanging_info_times_the_attempt_out() -> None:
    probe = FakeProbe([0.002], info=["hang"])
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=Sleeps())
    assert check.ok and check.attempt_failures == (Reason.TIMEOUT,)
    assert probe.calls == ["INFO", "PING", "INFO"]


@pytest.mark.asyncio
async def test_info_of_the_first_attempt_kept_when_its_ping_failed() -> None:
    probe = FakeProbe([ConnectionResetError(), 0.002])
    check = await run_check(probe, Policy(), wall_clock=lambda: 0.0, sleep=Sleeps())
    assert check.ok and check.attempts == 2 and check.info == NodeInfo(connected_clients=1)
    assert probe.calls == ["INFO", "PING", "PING"]


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
