"""Memory of the processes a benchmark runs against, read from /proc while it runs.

A program's figures cover its whole process tree (an nginx master and its workers, a postmaster
and its backends, a uvicorn supervisor and its workers): RSS summed over the processes, which
counts shared pages once per process, and the proportional set size (PSS), which splits shared
pages among their users so trees add up. For one Python process the two are close.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.launcher.leftovers import descendants

PROC = Path("/proc")


def _kib_field(path: Path, name: str) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True, slots=True)
class TreeMemory:
    """RSS and PSS of a process tree, in bytes (RSS adds shared pages once per process)."""

    rss: int = 0
    pss: int = 0

    def max(self, other: TreeMemory) -> TreeMemory:
        return TreeMemory(max(self.rss, other.rss), max(self.pss, other.pss))


def tree_memory(pid: int) -> TreeMemory:
    """RSS (VmRSS) and PSS of `pid` and every process below it."""
    tree = {pid, *descendants(pid)}
    return TreeMemory(
        rss=sum(_kib_field(PROC / str(p) / "status", "VmRSS:") for p in tree),
        pss=sum(_kib_field(PROC / str(p) / "smaps_rollup", "Pss:") for p in tree),
    )


@dataclass
class Footprint:
    """Per program: its tree's memory when idle and the most seen under load."""

    idle: dict[str, TreeMemory] = field(default_factory=dict)
    peak: dict[str, TreeMemory] = field(default_factory=dict)


class MemorySampler:
    """Samples `pids()` (program name -> root pid) every `interval` seconds in a thread while
    a `sampling()` block runs, keeping each program's peak in `footprint`."""

    def __init__(self, pids: Callable[[], Mapping[str, int]], interval: float = 0.5) -> None:
        self.pids, self.interval = pids, interval
        self.footprint = Footprint()

    def measure_idle(self) -> None:
        for name, pid in self.pids().items():
            self.footprint.idle[name] = tree_memory(pid)

    def sampling(self) -> _Sampling:
        return _Sampling(self)

    def sample(self) -> None:
        peak = self.footprint.peak
        for name, pid in self.pids().items():
            peak[name] = peak.get(name, TreeMemory()).max(tree_memory(pid))


class _Sampling:
    def __init__(self, sampler: MemorySampler) -> None:
        self.sampler = sampler
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.sampler.interval):
            self.sampler.sample()

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()
