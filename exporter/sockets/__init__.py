"""Readers of the pod's kernel socket state: ``/proc/net/tcp{,6}``, ``/proc/net/snmp``
and this process's own socket inodes. Pure parsers; the probe that reads the files is
:mod:`exporter.probes.sockets`."""

from exporter.sockets.own_inodes import own_socket_inodes
from exporter.sockets.snmp import parse_snmp
from exporter.sockets.tcp_table import (
    STATES,
    RemoteMatcher,
    TableCounts,
    count_by_remote,
)

__all__ = [
    "STATES",
    "RemoteMatcher",
    "TableCounts",
    "count_by_remote",
    "own_socket_inodes",
    "parse_snmp",
]
