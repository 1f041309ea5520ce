"""The mesh's own PostgreSQL (used when DATABASE_URL is unset): a cluster under the state directory,
initialised and run from the system's binaries as the `postgres` OS user when we are root."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from infra.launcher.errors import LaunchError
from infra.launcher.health import PostgresProbe
from infra.launcher.layout import HOST
from infra.launcher.programs import Priority, ProcessSpec

if TYPE_CHECKING:
    from infra.launcher.layout import MeshLayout

#: Debian installs each major version under its own directory: /usr/lib/postgresql/<major>/bin.
POSTGRES_ROOT = Path("/usr/lib/postgresql")
#: PostgreSQL refuses to run as root, so root runs it as this user.
OS_USER = "postgres"
#: The supervisord program of the replica the query services read (`cloudnet up --replica`).
REPLICA = "postgres-replica"
#: A primary that streams to a replica: `replica` is PostgreSQL's default wal_level, stated so a
#: changed default cannot break the replica; the kept WAL lets a replica that was stopped for a
#: while catch up. https://www.postgresql.org/docs/current/runtime-config-replication.html
REPLICATION = (
    *("-c", "wal_level=replica"),
    *("-c", "max_wal_senders=10"),
    *("-c", "wal_keep_size=256MB"),
)


def bin_dir() -> Path:
    """The newest installed major version's binaries."""
    versions = [p for p in POSTGRES_ROOT.glob("*/bin") if (p / "postgres").exists()]
    if not versions:
        raise LaunchError(f"no PostgreSQL server under {POSTGRES_ROOT}; set DATABASE_URL instead")
    return max(versions, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def run_as() -> str | None:
    return OS_USER if os.geteuid() == 0 else None


def postgres_spec(layout: MeshLayout) -> ProcessSpec:
    # A primary with a replica keeps WAL for it and lets it stream (DESIGN §7, `up --replica`).
    replication = REPLICATION if layout.own_replica else ()
    return server_spec("postgres", layout.paths.postgres, layout.ports.postgres, *replication)


def replica_spec(layout: MeshLayout) -> ProcessSpec:
    """The replica's server; `up` starts it once it is cloned from the migrated primary."""
    paths, ports = layout.paths, layout.ports
    # hot_standby_feedback: a query service's read is never cancelled because the primary
    # vacuumed rows it still sees. The replication settings are the primary's: a hot standby
    # refuses to start with a lower max_wal_senders than its primary's.
    settings = (*REPLICATION, "-c", "hot_standby_feedback=on")
    spec = server_spec(REPLICA, paths.postgres_replica, ports.postgres_replica, *settings)
    return dataclasses.replace(spec, after_migrations=True)


def server_spec(name: str, directory: Path, port: int, *settings: str) -> ProcessSpec:
    """A PostgreSQL server on `port` with its data and socket under `directory`."""
    return ProcessSpec(
        name=name,
        command=(
            str(bin_dir() / "postgres"),
            *("-D", str(directory / "data"), "-p", str(port), "-k", str(directory / "run")),
            *("-c", f"listen_addresses={HOST}"),
            # 8 services with pools of up to 10, the exporter and the CLI's tools.
            *("-c", "max_connections=200"),
            *settings,
        ),
        ports=(port,),
        priority=Priority.STORAGE,
        probe=PostgresProbe(f"postgresql://postgres@{HOST}:{port}/postgres"),
        user=run_as(),
        stop_signal="INT",  # fast shutdown: roll back open transactions, don't wait for clients
        stop_wait_seconds=30,
        stop_as_group=False,  # the postmaster stops its backends itself
    )


async def ensure_cluster(layout: MeshLayout) -> None:
    """Create the data directory with `initdb` unless it already holds a cluster."""
    data = layout.paths.postgres / "data"
    user = await own_directories(layout.paths.postgres, data, layout.paths.postgres / "run")
    if (data / "PG_VERSION").exists():
        return
    await run_tool(
        user,
        str(bin_dir() / "initdb"),
        *("-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"),
        "--no-sync",  # a fresh, empty cluster: nothing to lose if the machine crashes now
        "--no-instructions",
        failure=f"initdb of {data} failed",
    )


async def own_directories(*directories: Path) -> str | None:
    """Create `directories` (mode 0700) for the OS user PostgreSQL runs as; that user, if any."""
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    user = run_as()
    if user is not None:
        entry = pwd.getpwnam(user)
        for directory in directories:
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        await run_tool(
            user,
            "test",
            "-w",
            str(directories[-1]),
            failure=(
                f"the {user} OS user cannot write {directories[-1]}; PostgreSQL runs as that "
                "user, so every parent directory of the state directory must be traversable "
                "(chmod o+x)"
            ),
        )
    return user


async def run_tool(user: str | None, *command: str, failure: str) -> None:
    argv = [*_as_user(user), *command]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise LaunchError(failure, log=output.decode(errors="replace"))


def _as_user(user: str | None) -> list[str]:
    """The prefix that runs a command as `user` (nothing when we already are that user)."""
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--"] if user else []
