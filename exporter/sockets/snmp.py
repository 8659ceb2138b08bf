"""The network namespace's TCP counters from ``/proc/net/snmp``.

The file holds pairs of lines per protocol, a header naming the fields and a line of
values::

    Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails ...
    Tcp: 1 200 120000 -1 33 17 1 6 0 3783 2307 0 0 17 0

Only the four counters the SPEC exports are returned, keyed so the lead maps them to
``pod_tcp_<key>_total``. Anything malformed gives an empty dict, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["TCP_COUNTERS", "parse_snmp"]

#: kernel field name -> key (metric ``pod_tcp_<key>_total``)
TCP_COUNTERS: Mapping[str, str] = {
    "EstabResets": "estab_resets",
    "AttemptFails": "attempt_fails",
    "OutRsts": "out_resets",
    "RetransSegs": "retrans_segs",
}


def parse_snmp(text: str) -> dict[str, int]:
    """``{"estab_resets": …, "attempt_fails": …, "out_resets": …, "retrans_segs": …}``.

    Counters the kernel does not list are absent; a missing or inconsistent ``Tcp:``
    pair, or a non-integer / negative value for one of ours, gives ``{}``.
    """
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Tcp:")]
    if len(rows) != 2:
        return {}
    names, values = rows
    if len(names) != len(values) or not names:
        return {}
    out: dict[str, int] = {}
    for name, value in zip(names, values, strict=True):
        key = TCP_COUNTERS.get(name)
        if key is None:
            continue
        try:
            number = int(value)
        except ValueError:
            return {}
        if number < 0:
            return {}
        out[key] = number
    return out
