"""Runs wrk (https://github.com/wg/wrk) with one of the Lua scenarios in benchmarks/wrk/ and reads
back the figures the scenario prints on its `WRK_JSON` line."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRK = "wrk"
SCRIPTS = Path(__file__).resolve().parent / "wrk"


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (seconds), answers and socket errors."""

    seconds: float
    requests: int
    latency: dict[str, float]
    statuses: dict[int, int]
    #: wrk's socket errors: connect, read, write, timeout (and `status`: non-2xx/3xx answers).
    errors: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def socket_errors(self) -> int:
        return sum(n for kind, n in self.errors.items() if kind != "status")

    @property
    def unexpected(self) -> dict[int, int]:
        """Answers outside 2xx, by status."""
        return {s: n for s, n in sorted(self.statuses.items()) if not 200 <= s < 300}

    @property
    def ok_per_second(self) -> float:
        ok = sum(n for s, n in self.statuses.items() if 200 <= s < 300)
        return ok / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_second": self.per_second,
            "ok_per_second": self.ok_per_second,
            "latency_ms": {k: v * 1000 for k, v in self.latency.items()},
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "socket_errors": {k: v for k, v in self.errors.items() if k != "status"},
        }


def raise_open_files_limit() -> int:
    """Lift this process's (and so wrk's) open-file limit to the hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft if hard == resource.RLIM_INFINITY else hard


def wrk_available() -> bool:
    return shutil.which(WRK) is not None


def run_wrk(
    url: str,
    scenario: str,
    data_file: Path,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    timeout_seconds: float = 10,
    extra: Sequence[str] = (),
) -> WrkResult:
    """`wrk` with `benchmarks/wrk/<scenario>.lua` and the data file (token<TAB>id lines)."""
    command = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        f"--timeout={timeout_seconds:g}s",
        "-s",
        str(SCRIPTS / f"{scenario}.lua"),
        *extra,
        url,
        "--",
        str(data_file),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=seconds + 120
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    figures = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        seconds=figures["duration_us"] / 1e6,
        requests=figures["requests"],
        latency={k: v / 1e6 for k, v in figures["latency_us"].items()},
        statuses={int(k): v for k, v in figures["statuses"].items()},
        errors=figures["errors"],
    )
