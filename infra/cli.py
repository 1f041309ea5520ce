"""`cloudnet`, the command line of a local mesh (DESIGN §7): up, down, status, token, migrate.

Settings are read once, from the environment and then the mesh.env that `up` wrote, so every
command run from the same checkout finds that mesh by itself.
"""

import asyncio
import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Annotated, cast
from urllib.parse import urlsplit

import typer
from rich.text import Text

from infra.launcher.console import console, run_with_progress, status_json, status_table
from infra.launcher.errors import LaunchError
from infra.launcher.health import Deadline
from infra.launcher.layout import MeshLayout, Paths
from infra.launcher.lifecycle import down as stop_mesh
from infra.launcher.lifecycle import up as start_mesh
from infra.launcher.mesh import mesh_specs, program_statuses, running_layout
from infra.launcher.state import MeshSettings, jwt_secret, load_settings
from infra.launcher.supervisor import Supervisor

app = typer.Typer(
    help="Run and inspect a local cloudnet mesh.", no_args_is_help=True, add_completion=False
)


@app.callback()
def main(
    ctx: typer.Context,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="The mesh's state directory [$CLOUDNET_STATE_DIR, else .cloudnet]"),
    ] = None,
) -> None:
    ctx.obj = load_settings(state_dir)


def _mesh_settings(ctx: typer.Context) -> MeshSettings:
    return cast(MeshSettings, ctx.obj)


@app.command()
def up(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds until the whole mesh must answer")] = 90,
    keep_on_failure: Annotated[
        bool, typer.Option(help="Leave what started running when `up` fails, to inspect it")
    ] = False,
    replica: Annotated[
        bool,
        typer.Option(
            "--replica",
            help="Also run a streaming replica of the own PostgreSQL for the query services to "
            "read [$CLOUDNET_REPLICA]",
        ),
    ] = False,
) -> None:
    """Start the mesh (own PostgreSQL/RabbitMQ unless DATABASE_URL/AMQP_URL are set)."""
    mesh = _mesh_settings(ctx)
    replica = replica or mesh.settings.replica
    if replica and not mesh.own_postgres:
        console.print(
            Text(
                "✗ --replica clones the mesh's own PostgreSQL, and DATABASE_URL names an external "
                "one: set READ_DATABASE_URL to a replica of that database instead",
                style="bold red",
            )
        )
        raise typer.Exit(2)
    layout = MeshLayout.from_settings(
        mesh.settings,
        own_postgres=mesh.own_postgres,
        own_rabbitmq=mesh.own_rabbitmq,
        own_replica=replica,
    )
    layout = dataclasses.replace(layout, jwt_secret=jwt_secret(mesh.settings))
    try:
        started = run_with_progress("starting", lambda p: start_mesh(layout, Deadline(timeout), p))
    except LaunchError as error:
        if not keep_on_failure:
            console.print("Stopping what did start; the logs stay in the state directory.")
            with contextlib.suppress(LaunchError):  # shown already; `up` failed either way
                run_with_progress("stopping", lambda p: stop_mesh(layout, Deadline(timeout), p))
        raise typer.Exit(1) from error
    if not started:
        console.print(f"The mesh in {layout.paths.root} is already up.")
        return
    console.print(
        f"[bold green]cloudnet is up[/bold green]: gateway {layout.gateway_url}, "
        f"Prometheus {layout.prometheus_url}, state in {layout.paths.root}"
    )
    console.print('Get a token: cloudnet token --tenant acme --scope "cloud:read cloud:write"')


@app.command()
def down(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every process to exit")] = 90,
) -> None:
    """Stop every process of the mesh, PostgreSQL and RabbitMQ included."""
    settings = _mesh_settings(ctx).settings
    layout = running_layout(settings, Supervisor(Paths(settings.state_dir).supervisor_socket))
    try:
        stopped = run_with_progress("stopping", lambda p: stop_mesh(layout, Deadline(timeout), p))
    except LaunchError as error:
        raise typer.Exit(1) from error
    console.print("cloudnet is down." if stopped else f"No mesh runs in {layout.paths.root}.")


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout")] = False,
) -> None:
    """Every program's state and health; exits 1 unless all are running and healthy."""
    settings = _mesh_settings(ctx).settings
    supervisor = Supervisor(Paths(settings.state_dir).supervisor_socket)
    running = supervisor.is_running()
    layout = running_layout(settings, supervisor)
    rows = asyncio.run(program_statuses(supervisor, mesh_specs(layout))) if running else []
    healthy = running and all(row.healthy for row in rows)
    if as_json:
        typer.echo(json.dumps(status_json(rows), indent=2))
    elif not running:
        console.print(f"No mesh runs in {layout.paths.root}.")
    else:
        console.print(status_table(rows))
        console.print(f"gateway {layout.gateway_url}, Prometheus {layout.prometheus_url}")
    raise typer.Exit(0 if healthy else 1)


@app.command()
def token(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="Tenant id: a-z, 0-9 and '-'")],
    scope: Annotated[str, typer.Option(help='Space-separated, e.g. "cloud:read cloud:write"')],
    ttl: Annotated[int, typer.Option(help="Seconds the token is valid")] = 3600,
    subject: Annotated[str, typer.Option(help="The token's `sub` claim")] = "cli",
) -> None:
    """Print a bearer token signed with the mesh's secret."""
    from infra.auth import issue_token

    settings = _mesh_settings(ctx).settings
    if "jwt_secret" not in settings.model_fields_set:
        console.print(
            "[yellow]No CLOUDNET_JWT_SECRET and no mesh.env: the token is signed with the "
            "default development secret, which a mesh started by `cloudnet up` rejects.[/yellow]"
        )
    try:
        signed = issue_token(
            secret=settings.jwt_secret,
            tenant=tenant,
            scopes=scope.split(),
            subject=subject,
            ttl_seconds=ttl,
            audience=settings.jwt_audience,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--tenant") from error
    typer.echo(signed)


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Create the database if missing and migrate the event store and read models."""
    from infra.database import migrate as migrate_database

    url = _mesh_settings(ctx).settings.database_url
    parts = urlsplit(url)
    shown = url if parts.password is None else url.replace(f":{parts.password}@", ":***@")
    with console.status(f"migrating {shown}"):
        try:
            asyncio.run(migrate_database(url))
        except Exception as error:  # whatever the driver raises, the user needs it in one line
            console.print(Text(f"✗ migrating {shown} failed: {error}", style="bold red"))
            raise typer.Exit(1) from error
    console.print(f"[green]✓[/green] migrated {shown}")


def _register_operations() -> None:
    # replay, check, events and dlq live beside the mesh commands, in their own modules.
    from infra.operations import register

    register(app)


_register_operations()
