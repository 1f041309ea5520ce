"""How the `cloudnet` CLI shows the launcher's work: rich progress, failures with their log, and
the status table (or its JSON twin)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from infra.launcher.errors import LaunchError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from rich.status import Status

    from infra.launcher.mesh import ProgramStatus

T = TypeVar("T")

# Progress and messages go to stderr, so stdout carries only data (a token, --json).
console = Console(stderr=True, highlight=False)


class ConsoleProgress:
    """Draws the launcher's steps: a spinner for the current one, a tick for each one done."""

    def __init__(self, status: Status) -> None:
        self._status = status
        self._current: str | None = None

    def step(self, message: str) -> None:
        self.done()
        self._current = message
        self._status.update(message)

    def waiting(self, names: list[str]) -> None:
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        self._status.update(f"{self._current}: waiting for {shown}")

    def done(self) -> None:
        if self._current is not None:
            console.print(f"[green]✓[/green] {self._current}")
        self._current = None


def run_with_progress(title: str, work: Callable[[ConsoleProgress], Coroutine[Any, Any, T]]) -> T:
    """Run a launcher coroutine under a spinner; a LaunchError is shown (message and log), then
    raised again for the command to choose its exit."""
    with console.status(title) as status:
        progress = ConsoleProgress(status)
        try:
            result = asyncio.run(work(progress))
        except LaunchError as error:
            report_failure(error)
            raise
        progress.done()
    return result


def report_failure(error: LaunchError) -> None:
    # Messages and logs are shown as text: "[Errno 111]" or "[info]" are not rich markup.
    console.print(Text(f"✗ {error.message}", style="bold red"))
    if error.log:
        title = f"last lines of {error.program}'s log" if error.program else "output"
        console.print(Panel(Text(error.log), title=title, title_align="left", border_style="red"))


def status_table(rows: list[ProgramStatus]) -> Table:
    table = Table("program", "state", "pid", "uptime", "health")
    for row in rows:
        state = Text(row.state, style="green" if row.state == "RUNNING" else "red")
        health = (
            Text("—")
            if row.health is None
            else Text(row.health.detail, style="green" if row.health.ok else "red")
        )
        table.add_row(row.name, state, str(row.pid or "—"), _duration(row.uptime_seconds), health)
    return table


def status_json(rows: list[ProgramStatus]) -> list[dict[str, object]]:
    """One object per program; the exit code of `cloudnet status` says whether all are healthy."""
    return [
        {
            "name": row.name,
            "state": row.state,
            "pid": row.pid or None,
            "uptime_seconds": row.uptime_seconds,
            "healthy": row.healthy,
            "health": None if row.health is None else dataclasses.asdict(row.health),
        }
        for row in rows
    ]


def _duration(seconds: int) -> str:
    if not seconds:
        return "—"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
