"""Memory of the processes a benchmark runs against, read from /proc while it runs.

A program's figures cover its whole process tree (an nginx master and its workers, a postmaster
and its backends, a uvicorn supervisor and its workers): RSS summed over the processes, which
counts shared pages once per process, and the proportional set size (PSS), which splits shared
pages among their users so trees add up. For one Python process the two are close.

What the sampling costs is paid on the machine it measures, in the middle of a side's run, so it
is kept small and alike for both sides: one pass over /proc per sample for every tree, RSS from
`statm` every half second, and PSS only at the start and the end of a run. PSS walks every page
table of a process (`smaps_rollup`), and for a PostgreSQL tree of 56 processes that took about
110 ms of CPU: sampled twice a second with everything else, it took about 38 % of one of the two
cores from the mesh's side, and far less from the baseline's two programs (docs/BENCHMARKS.md,
sixteenth session).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.launcher.leftovers import children_by_parent, descendants

PROC = Path("/proc")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _kib_field(path: Path, name: str) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1]) * 1024
    return 0


def _rss(pid: int) -> int:
    """Resident bytes of `pid` (`statm`'s second field, in pages: what VmRSS shows)."""
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(frozen=True, slots=True)
class TreeMemory:
    """RSS and PSS of a process tree, in bytes (RSS adds shared pages once per process)."""

    rss: int = 0
    pss: int = 0

    def max(self, other: TreeMemory) -> TreeMemory:
        return TreeMemory(max(self.rss, other.rss), max(self.pss, other.pss))


def tree_memory(
    pid: int, *, pss: bool = True, children: dict[int, list[int]] | None = None
) -> TreeMemory:
    """RSS and, with `pss`, PSS of `pid` and every process below it (in `children`, when the
    caller read the process table once for several trees)."""
    tree = {pid, *descendants(pid, children)}
    return TreeMemory(
        rss=sum(_rss(p) for p in tree),
        pss=sum(_kib_field(PROC / str(p) / "smaps_rollup", "Pss:") for p in tree) if pss else 0,
    )


@dataclass
class Footprint:
    """Per program: its tree's memory when idle and the most seen under load."""

    idle: dict[str, TreeMemory] = field(default_factory=dict)
    peak: dict[str, TreeMemory] = field(default_factory=dict)


class MemorySampler:
    """Samples `pids()` (program name -> root pid) every `interval` seconds in a thread while
    a `sampling()` block runs, keeping each program's peak in `footprint`: the peak RSS of the
    samples, and the PSS read as the block ends (the load's memory is still held then)."""

    def __init__(self, pids: Callable[[], Mapping[str, int]], interval: float = 0.5) -> None:
        self.pids, self.interval = pids, interval
        self.footprint = Footprint()

    def measure_idle(self) -> None:
        children = children_by_parent()
        for name, pid in self.pids().items():
            self.footprint.idle[name] = tree_memory(pid, children=children)

    def sampling(self) -> _Sampling:
        return _Sampling(self)

    def sample(self, *, pss: bool = False) -> None:
        peak, children = self.footprint.peak, children_by_parent()
        for name, pid in self.pids().items():
            memory = tree_memory(pid, pss=pss, children=children)
            peak[name] = peak.get(name, TreeMemory()).max(memory)


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
        self.sampler.sample(pss=True)
