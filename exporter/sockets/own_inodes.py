"""Socket inodes held by this process, so that depwatch leaves its own connections out.

Each open file descriptor is a symlink under ``/proc/self/fd``; a socket's reads
``socket:[<inode>]``, the same number as the ``inode`` column of ``/proc/net/tcp``.
Listing ~100 descriptors costs well under a millisecond, so it runs every cycle.

This always reads the *real* ``/proc/self`` of the running process, even when
DEPWATCH_PROC_ROOT points the socket tables somewhere else (a host ``/proc`` mounted
elsewhere, ``/proc/<pid>`` of the application): inode numbers are global to the
kernel, so they match whichever table they are compared with.

The snapshot is taken a moment before the table is read: a connection depwatch opens
in between is counted once as the application's. TIME_WAIT entries carry inode 0 and
cannot be attributed (see :mod:`exporter.sockets.tcp_table`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SELF_FD_DIR", "own_socket_inodes"]

SELF_FD_DIR = Path("/proc/self/fd")

_PREFIX = "socket:["


def own_socket_inodes(fd_dir: Path = SELF_FD_DIR) -> frozenset[int]:
    """Inodes of every socket this process holds; empty when ``fd_dir`` is unreadable.

    A descriptor closed while the directory is being listed is simply skipped.
    """
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return frozenset()
    inodes: set[int] = set()
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith(_PREFIX) and target.endswith("]"):
            try:
                inodes.add(int(target[len(_PREFIX) : -1]))
            except ValueError:
                continue
    return frozenset(inodes)
