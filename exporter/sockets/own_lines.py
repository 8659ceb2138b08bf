"""Finding depwatch's own sockets in a socket table by inode, without a per-line loop.

Own sockets are a handful among tens of thousands of lines, so the search starts
from the inode digits rather than from the lines. Inodes are grouped by their
leading digits; with few groups (a process's sockets usually have close inode
numbers) each group is one regex whose literal prefix, ``" " + digits``, the
engine finds at memchr-like speed, and the few hits are checked to be the inode
column of a well-formed line. With many groups, one pass walks every line to its
inode column instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from exporter.sockets.addresses import HEX_LEN, Family

__all__ = ["KEY_PATTERNS", "own_keys"]

_H = "[0-9A-F]"


def _key_pattern(hexlen: int) -> re.Pattern[str]:
    # "\n" as the literal start lets the engine jump from line to line; the one group
    # is "REMOTEHEX:PORT ST", so findall() returns plain strings (no tuple per line).
    # TCP states are 01..0D today (include/net/tcp_states.h); 0x10 and up is garbage.
    # The local address is not used: only its width is checked.
    return re.compile(rf"\n *\d+: .{{{hexlen + 5}}} ({_H}{{{hexlen}}}:{_H}{{4}} 0{_H}) ")


#: family -> the pattern whose single group is a well-formed line's key
KEY_PATTERNS: dict[int, re.Pattern[str]] = {f: _key_pattern(n) for f, n in HEX_LEN.items()}
_KEY_FULL = {f: re.compile(rf"{_H}{{{n}}}:{_H}{{4}} 0{_H}") for f, n in HEX_LEN.items()}

_PREFIX_DIGITS = 3
#: beyond this many literal searches, one walk over every line is cheaper
_MAX_GROUPS = 4


def trie_alternation(words: Iterable[str]) -> str:
    """A regex matching exactly ``words`` (digit strings), common prefixes factored
    out so that the engine can search for the shared prefix as a literal."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict[str, dict]) -> str:
        branches = [ch + render(sub) if ch else "" for ch, sub in sorted(node.items())]
        if len(branches) == 1:
            return branches[0]
        alts = "|".join(b for b in branches if b)
        return f"(?:{alts})?" if "" in branches else f"(?:{alts})"

    return render(trie)


def own_keys(text: str, inodes: Collection[int], family: Family) -> list[str]:
    """Keys ("REMOTEHEX:PORT ST") of the well-formed lines whose inode is in ``inodes``.

    ``text`` is a table as scanned by :data:`KEY_PATTERNS` (starting at a newline).
    Inode 0 (TIME_WAIT, SYN_RECV) is never anyone's.
    """
    groups: dict[str, list[str]] = {}
    for inode in sorted({i for i in inodes if i > 0}):
        word = str(inode)
        groups.setdefault(word[:_PREFIX_DIGITS], []).append(word)
    if not groups:
        return []
    hexlen = HEX_LEN[family]
    if len(groups) > _MAX_GROUPS:
        trie = trie_alternation(w for words in groups.values() for w in words)
        # local, remote+state (captured), tx:rx tr:when retrnsmt, uid, probes, inode
        walk = re.compile(
            rf"\n *\d+: .{{{hexlen + 5}}} ({_H}{{{hexlen}}}:{_H}{{4}} 0{_H}) "
            rf".{{38}} +\d+ +-?\d+ (?:{trie})(?!\S)"
        )
        return walk.findall(text)
    found: list[str] = []
    seen: set[int] = set()  # line starts: a uid equal to the inode must not count twice
    full = _KEY_FULL[family]
    for words in groups.values():
        # the digits also occur in other columns: keep hits that are the 10th field
        for match in re.finditer(rf" {trie_alternation(words)}(?!\S)", text):
            start = text.rfind("\n", 0, match.start()) + 1
            if start in seen:
                continue
            stop = text.find("\n", match.end())
            fields = text[start : stop if stop >= 0 else len(text)].split(None, 10)
            if len(fields) < 10 or fields[9] != match.group()[1:]:
                continue
            key = f"{fields[2]} {fields[3]}"
            if (
                full.fullmatch(key)
                and len(fields[1]) == hexlen + 5
                and fields[0][:-1].isdigit()
                and fields[0][-1] == ":"
            ):
                seen.add(start)
                found.append(key)
    return found
