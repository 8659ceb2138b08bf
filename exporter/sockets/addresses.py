"""Addresses as the kernel spells them in ``/proc/net/tcp`` and ``/proc/net/tcp6``.

Each address is printed as 32-bit words, each word ``%08X`` of its raw value in host
byte order (so ``10.0.0.1`` is ``0100000A`` on x86 and arm64); ports are plain hex.
IPv4-mapped IPv6 (``::ffff:10.0.0.1``, what a dual-stack ``AF_INET6`` socket uses
for an IPv4 peer) appears in ``tcp6`` and is treated as the IPv4 address.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping
from typing import Literal

__all__ = ["HEX_LEN", "Family", "address_hex", "decode_address"]

Family = Literal[4, 6]

#: hex digits of an address in the ``tcp`` (4) and ``tcp6`` (6) tables
HEX_LEN: Mapping[int, int] = {4: 8, 6: 32}

_LITTLE = sys.byteorder == "little"
_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"


def _words_hex(packed: bytes) -> str:
    """Render raw address bytes the way the kernel does: 32-bit words, host order."""
    if not _LITTLE:
        return packed.hex().upper()
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


def address_hex(ip: str, *, family: Family) -> str | None:
    """The kernel's hex spelling of ``ip`` in the ``tcp`` (4) or ``tcp6`` (6) table.

    An IPv4 address in the IPv6 table is spelled as its IPv4-mapped form. Returns
    None when the address cannot appear in that table (an IPv6 address in ``tcp``)
    or is not an IP literal. Brackets and a ``%zone`` are ignored.
    """
    try:
        addr = ipaddress.ip_address(ip.strip("[]").partition("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if family == 4:
        return _words_hex(addr.packed) if addr.version == 4 else None
    packed = _MAPPED_PREFIX + addr.packed if addr.version == 4 else addr.packed
    return _words_hex(packed)


def decode_address(hexaddr: str) -> str:
    """Inverse of :func:`address_hex`; IPv4-mapped IPv6 comes back as plain IPv4.

    Raises ValueError on anything but 8 or 32 hex digits.
    """
    if len(hexaddr) not in (8, 32):
        raise ValueError(f"address must be 8 or 32 hex digits, got {len(hexaddr)}")
    raw = bytes.fromhex(hexaddr)
    if _LITTLE:
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    v6 = ipaddress.IPv6Address(raw)
    return str(v6.ipv4_mapped or v6)
