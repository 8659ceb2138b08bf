"""Table tests for setting value parsers."""

import pytest

from exporter.values import parse_bool, parse_duration, parse_host_port, parse_positive_int


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5), ("2s", 2.0), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5),
        ("2", 2.0), ("0.5", 0.5), (".25", 0.25), ("100us", 1e-4), ("1h2m3s4ms", 3723.004),
        (" 3s ", 3.0), ("10ns", 1e-8),
    ],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0", "0s", "-1s", "1x", "s", "1s2", "abc", "1 s", "inf",
                                  "nan", "1e3", "--1s", "0ms", "\u0661s", "\u0661"])  # fmt: skip
def test_invalid_durations(text: str) -> None:
    with pytest.raises(ValueError, match="positive duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True),
    ("false", False), ("0", False), ("no", False), ("NO", False), (" False ", False),
])  # fmt: skip
def test_booleans(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "y", "on", "2", "truee"])
def test_invalid_booleans(text: str) -> None:
    with pytest.raises(ValueError, match="true/false"):
        parse_bool(text)


@pytest.mark.parametrize(("text", "parsed"), [
    ("redis:6379", ("redis", 6379)), ("[::1]:6379", ("::1", 6379)), (":9478", ("", 9478)),
    ("10.0.0.1:1", ("10.0.0.1", 1)),
])  # fmt: skip
def test_host_port(text: str, parsed: tuple[str, int]) -> None:
    assert parse_host_port(text) == parsed


@pytest.mark.parametrize("text", ["redis", "redis:", "redis:0", "redis:70000", "::1:6379",
                                  "[::1]6379", "redis:abc", "redis:\u0661"])  # fmt: skip
def test_invalid_host_port(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_host_port(text)


def test_positive_int() -> None:
    assert parse_positive_int("1000") == 1000
    for bad in ("0", "-1", "1.5", "x", "", "+5", "\u0661\u0660", " 1 0"):
        with pytest.raises(ValueError, match="positive integer"):
            parse_positive_int(bad)
