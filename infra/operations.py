"""`cloudnet replay | check | events | dlq`: operating the event store and the read models of
the mesh this checkout runs (settings found as for every other command)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from events import EventStore
from infra.settings import Settings
from projectors import dead_letters
from projectors import replay as rebuild
from projectors.catalog import READ_MODELS

console = Console()
T = TypeVar("T")


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj.settings
    return settings


def with_store(ctx: typer.Context, work: Callable[[EventStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = await EventStore.connect(settings_of(ctx).database_url, min_size=1, max_size=4)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (rebuild.ReplayError, LookupError) as error:
        console.print(f"[bold red]✗[/bold red] {error}")
        raise typer.Exit(2) from error
    except OSError as error:
        reason = str(error) or type(error).__name__  # a timeout says nothing of itself
        console.print(f"[bold red]✗[/bold red] cannot reach the event store: {reason}")
        raise typer.Exit(2) from error


@contextlib.asynccontextmanager
async def _progress_bar(label: str) -> AsyncIterator[Callable[[rebuild.Progress], None]]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events · {task.fields[rate]:,.0f}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task: TaskID = bar.add_task(label, total=None, rate=0.0)

        def update(progress: rebuild.Progress) -> None:
            bar.update(
                task,
                completed=progress.applied,
                total=max(progress.total, progress.applied),
                rate=progress.rate,
            )

        yield update


def replay(
    ctx: typer.Context,
    read_model: Annotated[
        str | None, typer.Argument(help=f"One of: {', '.join(READ_MODELS)}")
    ] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every read model")] = False,
    verify: Annotated[
        bool, typer.Option(help="Rebuild aside and diff against the live model")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Build the next version, then drop it")] = False,
    keep_old: Annotated[bool, typer.Option(help="Keep the previous version's tables")] = False,
    grace: Annotated[float, typer.Option(help="Seconds before the old version is dropped")] = 5.0,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = rebuild.BATCH_SIZE,
    from_position: Annotated[
        int | None, typer.Option(help="Partial rebuild from here (where the model allows)")
    ] = None,
    to_position: Annotated[
        int | None, typer.Option(help="With --dry-run: build the model as of this position")
    ] = None,
) -> None:
    """Rebuild read models from the event store with no downtime (or --verify them)."""
    names = _names(read_model, all_models)
    if from_position is not None:
        # Every row of cloudnet's read models depends on its aggregate's earlier events (a
        # network's subnet count, an instance's state), so none can start mid-history.
        raise typer.BadParameter(
            f"{', '.join(names)} cannot be rebuilt from a position: their rows depend on every "
            "earlier event of their aggregate; rebuild from the start (no --from-position)",
            param_hint="--from-position",
        )
    if to_position is not None and not dry_run:
        raise typer.BadParameter(
            "a model that stops in the past cannot go live; add --dry-run",
            param_hint="--to-position",
        )
    if verify:
        differing = with_store(ctx, lambda store: _verify_all(store, names))
        raise typer.Exit(1 if differing else 0)

    async def run(store: EventStore) -> None:
        for name in names:
            async with _progress_bar(f"rebuilding {name}") as update:
                report = await rebuild.replay(
                    store,
                    name,
                    update,
                    dry_run=dry_run,
                    keep_old=keep_old,
                    grace_seconds=grace,
                    batch_size=batch_size,
                    to_position=to_position,
                )
            verb = "built (dry run, dropped)" if dry_run else f"live as {report.new_key}"
            console.print(
                f"[green]✓[/green] {name}: {report.events:,} events in {report.seconds:.1f} s, "
                f"{verb} (was {report.old_key})"
            )

    with_store(ctx, run)


def check(ctx: typer.Context) -> None:
    """Every read model against a fresh fold of the store; exits 1 on any difference."""
    differing = with_store(ctx, lambda store: _verify_all(store, list(READ_MODELS)))
    raise typer.Exit(1 if differing else 0)


async def _verify_all(store: EventStore, names: list[str]) -> int:
    differing = 0
    for name in names:
        async with _progress_bar(f"verifying {name}") as update:
            differences = await rebuild.verify(store, name, update)
        if not differences:
            console.print(f"[green]✓[/green] {name} equals a fresh fold of the store")
            continue
        differing += len(differences)
        table = Table(
            "table", "id", "live", "rebuilt", title=f"{name}: {len(differences)} rows differ"
        )
        for difference in differences[:50]:
            table.add_row(
                difference.table, difference.row_id, str(difference.live), str(difference.rebuilt)
            )
        console.print(table)
    return differing


def _names(read_model: str | None, all_models: bool) -> list[str]:
    if all_models == (read_model is not None):
        raise typer.BadParameter("name one read model, or pass --all")
    if read_model is not None and read_model not in READ_MODELS:
        raise typer.BadParameter(f"unknown read model; known: {', '.join(READ_MODELS)}")
    return list(READ_MODELS) if all_models else [read_model or ""]


dlq = typer.Typer(help="Dead letters: poison events a projection stopped at.", no_args_is_help=True)


@dlq.command("list")
def dlq_list(ctx: typer.Context) -> None:
    """Open dead letters, oldest first."""
    letters = with_store(ctx, dead_letters.open_dead_letters)
    if not letters:
        console.print("No dead letters.")
        return
    table = Table("id", "projection", "position", "event", "stream", "error", "failed at")
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.projection,
            str(letter.position),
            letter.event_type,
            letter.stream_id,
            letter.error,
            letter.failed_at.isoformat(),
        )
    console.print(table)


@dlq.command("retry")
def dlq_retry(ctx: typer.Context, dead_letter_id: int) -> None:
    """Resume the projection at the event (after a fix); it is dead-lettered again if it fails."""
    letter = with_store(ctx, lambda store: dead_letters.retry(store, dead_letter_id))
    console.print(f"[green]✓[/green] {letter.projection} resumes at position {letter.position}")


@dlq.command("skip")
def dlq_skip(
    ctx: typer.Context,
    dead_letter_id: int,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the event is never applied")] = False,
) -> None:
    """Move the projection past the event for good (recorded as an event of its own)."""
    if not yes:
        console.print("Skipping loses that event in this read model for good; pass --yes.")
        raise typer.Exit(2)
    actor = getpass.getuser()
    letter = with_store(ctx, lambda store: dead_letters.skip(store, dead_letter_id, actor))
    console.print(f"[yellow]skipped[/yellow] event {letter.event_id} in {letter.projection}")


def register(app: typer.Typer) -> None:
    from infra.event_log import events

    app.command()(replay)
    app.command()(check)
    app.add_typer(dlq, name="dlq")
    app.add_typer(events, name="events")
