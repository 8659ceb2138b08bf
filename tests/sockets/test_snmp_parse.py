"""/proc/net/snmp parsing."""

from __future__ import annotations

import pytest
from socket_fixtures import SNMP

from exporter.sockets.snmp import TCP_COUNTERS, parse_snmp

HEADER = (
    "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails"
    " EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors"
)


def test_parses_the_four_counters() -> None:
    assert parse_snmp(SNMP) == {
        "attempt_fails": 4,
        "estab_resets": 6,
        "retrans_segs": 9,
        "out_resets": 17,
    }


def test_keys_name_the_spec_metrics() -> None:
    assert {f"pod_tcp_{k}_total" for k in TCP_COUNTERS.values()} == {
        "pod_tcp_estab_resets_total",
        "pod_tcp_attempt_fails_total",
        "pod_tcp_out_resets_total",
        "pod_tcp_retrans_segs_total",
    }


def test_real_proc_net_snmp_parses() -> None:
    with open("/proc/net/snmp") as f:
        got = parse_snmp(f.read())
    assert set(got) == set(TCP_COUNTERS.values())
    assert all(v >= 0 for v in got.values())


def test_counters_the_kernel_does_not_list_are_absent() -> None:
    text = "Tcp: ActiveOpens EstabResets\nTcp: 5 7\n"
    assert parse_snmp(text) == {"estab_resets": 7}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n",
        HEADER + "\n",  # header without values
        HEADER + "\nTcp: 1 2 3\n",  # too few values
        HEADER + "\nTcp: 1 200 120000 -1 33 17 x 6 2 3783 2307 9 0 17 0\n",  # not a number
        HEADER + "\nTcp: 1 200 120000 -1 33 17 4 -6 2 3783 2307 9 0 17 0\n",  # negative
        HEADER + "\nTcp: 1 200 120000 -1 33 17 4 6 2 3783 2307 9 0 17 0\nTcp: 1\n",  # 3 rows
        "Tcp:\nTcp:\n",
    ],
)
def test_malformed_gives_empty_dict(text: str) -> None:
    assert parse_snmp(text) == {}


def test_max_conn_minus_one_is_fine() -> None:
    """MaxConn is -1 on Linux; only our four counters must be non-negative."""
    assert parse_snmp(SNMP)["estab_resets"] == 6
