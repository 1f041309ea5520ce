"""What a mesh leaves on the machine: its process tree and bound ports, read from /proc and by
binding, so `up` can refuse a busy port and `down` can prove nothing remains."""

from __future__ import annotations

import errno
import socket
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from infra.launcher.layout import HOST

if TYPE_CHECKING:
    from collections.abc import Iterable

PROC = Path("/proc")


def stat_fields(pid: int) -> list[str] | None:
    """`/proc/<pid>/stat` from field 3 (the state) on, or None once the process is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children at this moment, by parent pid (one pass over /proc)."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            children[int(fields[1])].append(int(entry.name))
    return children


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> set[int]:
    """Every process below `pid` (children, grandchildren, ...) at this moment, or in
    `children` (`children_by_parent()`) when the caller looks up several trees at once."""
    if children is None:
        children = children_by_parent()
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def ports_in_use(ports: Iterable[int]) -> list[int]:
    """The ports among `ports` that something on 127.0.0.1 listens on (or otherwise holds)."""
    return [port for port in sorted(set(ports)) if _is_bound(port)]


def _is_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: connections of a stopped mesh lingering in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False
