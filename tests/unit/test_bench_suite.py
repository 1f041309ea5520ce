"""`make bench`'s report: figures become table rows and land between the markers only."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import suite
from benchmarks.mesh import MARKER, clear_state_dir


def test_the_gateway_rows_pair_each_scenario_with_its_baseline() -> None:
    side = {"requests_per_second": 400.0, "latency_ms": {"p99": 120.0}}
    base = {"requests_per_second": 1600.0, "latency_ms": {"p99": 20.0}}
    figures = {
        "scenarios": {"POST /v1/networks (cloudnet)": side, "POST /v1/networks (baseline)": base},
        "memory_mib": {"command-1": {"idle_rss": 70.2, "load_rss": 74.9}},
        "round_ratios": {"POST /v1/networks": [0.31, 0.22, 0.24]},
    }

    rows = suite.gateway_rows(figures)

    assert rows[0][0] == "gateway: POST /v1/networks"
    assert rows[0][3] == "0.25x (rounds 0.22-0.31)"
    assert rows[1][1] == "RSS 70 MiB idle, 75 MiB under load"


def test_a_failed_step_is_reported_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = tmp_path / "BENCHMARKS.md"
    document.write_text(f"# Benchmarks\n\n{suite.BEGIN}\nold\n{suite.END}\n\n## Analysis\nkept\n")
    monkeypatch.setattr(suite, "DOCUMENT", document)
    step = suite.Step("4", "Visibility lag", "benchmarks.visibility", [], [], suite.visibility_rows)
    step.failed = "exited 1"

    suite.write_document(suite.render([step], ["date: now"], quick=False))

    text = document.read_text()
    assert "| 4 | Visibility lag | **exited 1** |" in text
    assert "old" not in text
    assert text.endswith("## Analysis\nkept\n")
    assert text.count(suite.BEGIN) == 1


def test_a_benchmark_clears_only_a_state_directory_a_benchmark_made(tmp_path: Path) -> None:
    made, own = tmp_path / "made", tmp_path / "own"
    for directory in (made, own):
        (directory / "postgres").mkdir(parents=True)
        (directory / "postgres" / "PG_VERSION").write_text("15")
    (made / MARKER).touch()

    assert clear_state_dir(made)
    assert not made.exists()
    assert not clear_state_dir(own)
    assert (own / "postgres" / "PG_VERSION").read_text() == "15"
    assert not clear_state_dir(tmp_path / "missing")
