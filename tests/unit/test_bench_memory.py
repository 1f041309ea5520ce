"""The memory sampler: whole process trees, and PSS (which walks every page table of a process)
read only as a sampled run ends, so sampling does not load the side it measures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import memory
from benchmarks.memory import MemorySampler
from infra.launcher.leftovers import children_by_parent, descendants

# A parent that starts a child, and both sleep: a tree of two processes.
TREE = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
)


@pytest.fixture
def tree() -> Iterator[int]:
    parent = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        deadline = time.monotonic() + 10
        while not descendants(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        yield parent.pid
    finally:
        for child in descendants(parent.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_one_read_of_the_process_table_finds_the_same_trees(tree: int) -> None:
    children = children_by_parent()

    assert len(descendants(tree)) == 1
    assert descendants(tree, children) == descendants(tree)


def test_pss_is_read_once_as_a_sampled_run_ends_and_rss_at_every_sample(
    tree: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real = memory._kib_field

    def counted(path: Path, name: str) -> int:
        reads.append(path)
        return real(path, name)

    monkeypatch.setattr(memory, "_kib_field", counted)
    samples: list[int] = []
    sampler = MemorySampler(lambda: {"tree": tree}, interval=0.01)
    sample = sampler.sample

    def counted_sample(*, pss: bool = False) -> None:
        samples.append(pss)
        sample(pss=pss)

    monkeypatch.setattr(sampler, "sample", counted_sample)

    with sampler.sampling():
        time.sleep(0.2)

    assert samples.count(False) >= 5  # RSS only, every 10 ms here
    assert samples[-1] is True
    assert samples.count(True) == 1
    # PSS once for each of the two processes; RSS comes from statm, not through _kib_field.
    assert [path.name for path in reads] == ["smaps_rollup", "smaps_rollup"]
    peak = sampler.footprint.peak["tree"]
    # Two Python interpreters: each holds several MiB resident.
    assert peak.rss > 2 * 4 * 2**20
    assert 0 < peak.pss <= peak.rss


def test_idle_memory_has_both_figures(tree: int) -> None:
    sampler = MemorySampler(lambda: {"tree": tree})

    sampler.measure_idle()

    idle = sampler.footprint.idle["tree"]
    assert idle.rss > 2 * 4 * 2**20
    assert 0 < idle.pss <= idle.rss
