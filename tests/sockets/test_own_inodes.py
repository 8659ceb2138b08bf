"""Socket inodes of this process from /proc/self/fd."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from exporter.sockets.own_inodes import own_socket_inodes


def test_finds_this_process_sockets() -> None:
    with socket.socket() as a, socket.socket(socket.AF_INET6) as b:
        inodes = own_socket_inodes()
        for s in (a, b):
            assert os.fstat(s.fileno()).st_ino in inodes


def test_closed_socket_is_gone() -> None:
    s = socket.socket()
    inode = os.fstat(s.fileno()).st_ino
    s.close()
    assert inode not in own_socket_inodes()


def test_fixture_fd_directory(tmp_path: Path) -> None:
    fd = tmp_path / "fd"
    fd.mkdir()
    for name, target in {
        "0": "/dev/null",
        "3": "socket:[12345]",
        "4": "socket:[67890]",
        "5": "pipe:[555]",
        "6": "anon_inode:[eventpoll]",
        "7": "socket:[notanumber]",
        "8": "socket:[",
    }.items():
        (fd / name).symlink_to(target)
    (fd / "9").write_text("not a link")
    assert own_socket_inodes(fd) == frozenset({12345, 67890})


def test_unreadable_directory_gives_empty(tmp_path: Path) -> None:
    assert own_socket_inodes(tmp_path / "missing") == frozenset()
