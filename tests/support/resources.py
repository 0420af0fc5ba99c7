"""What a process holds, read from /proc (Linux): open descriptors, threads, TCP connections to
a port, resident memory. For the soak tests, which compare these after each cycle of load and
faults: anything that grows with the cycles instead of staying bounded is a leak."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

# /proc/net/tcp's state column: 01 is ESTABLISHED.
_ESTABLISHED = "01"
_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


def open_fds(pid: int | str = "self") -> int:
    """How many file descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def os_threads(pid: int | str = "self") -> int:
    """How many threads (tasks) the process has, as the kernel counts them."""
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_bytes(pid: int | str = "self") -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


def _fd_links(pid: int | str) -> dict[str, str]:
    """Each open descriptor's number and what it links to ("socket:[inode]", "pipe:[inode]",
    a path)."""
    links = {}
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        try:
            links[name] = os.readlink(f"{directory}/{name}")
        except OSError:  # closed meanwhile
            continue
    return links


def _socket_inodes(pid: int | str) -> set[str]:
    inodes = set()
    for link in _fd_links(pid).values():
        match = _SOCKET_LINK.match(link)
        if match:
            inodes.add(match.group(1))
    return inodes


def open_pipes(pid: int | str = "self") -> set[str]:
    """The process's descriptors that are pipe ends, as "fd -> pipe:[inode]"."""
    return {f"{fd} -> {link}" for fd, link in _fd_links(pid).items() if link.startswith("pipe:")}


def open_sockets(pid: int | str = "self") -> set[str]:
    """The process's descriptors that are sockets, as "fd -> socket:[inode]"."""
    return {f"{fd} -> {link}" for fd, link in _fd_links(pid).items() if _SOCKET_LINK.match(link)}


def tcp_connections(
    port: int, pid: int | str = "self", *, remote: bool = True, established_only: bool = True
) -> int:
    """The process's TCP sockets whose remote (``remote``) or local port is ``port``: its client
    connections to a server on that port, or a server's connections from its clients."""
    mine = _socket_inodes(pid)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, peer, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode not in mine or (established_only and state != _ESTABLISHED):
                continue
            address = peer if remote else local
            if int(address.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def app_threads(excluded: tuple[str, ...] = ("process_request_thread",)) -> list[str]:
    """Names of this process's live Python threads, without those of the test's own servers
    (a stand-in server's handler threads are named after their target, process_request_thread)."""
    return sorted(
        thread.name
        for thread in threading.enumerate()
        if not any(part in thread.name for part in excluded)
    )


@dataclass(frozen=True)
class Usage:
    """One reading of a process's resources."""

    fds: int
    threads: int
    connections: dict[str, int]
    rss: int

    def __str__(self) -> str:
        conns = " ".join(f"{name}={count}" for name, count in self.connections.items())
        return f"fds={self.fds} threads={self.threads} {conns} rss={self.rss // 1024}KiB"
