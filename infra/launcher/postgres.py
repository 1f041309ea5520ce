"""The mesh's own PostgreSQL (used when DATABASE_URL is unset): a cluster under the state directory,
initialised and run from the system's binaries as the `postgres` OS user when we are root."""

from __future__ import annotations

import asyncio
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


def bin_dir() -> Path:
    """The newest installed major version's binaries."""
    versions = [p for p in POSTGRES_ROOT.glob("*/bin") if (p / "postgres").exists()]
    if not versions:
        raise LaunchError(f"no PostgreSQL server under {POSTGRES_ROOT}; set DATABASE_URL instead")
    return max(versions, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def run_as() -> str | None:
    return OS_USER if os.geteuid() == 0 else None


def postgres_spec(layout: MeshLayout) -> ProcessSpec:
    pg = layout.paths.postgres
    return ProcessSpec(
        name="postgres",
        command=(
            str(bin_dir() / "postgres"),
            *("-D", str(pg / "data"), "-p", str(layout.ports.postgres), "-k", str(pg / "run")),
            *("-c", f"listen_addresses={HOST}"),
            # 8 services with pools of up to 10, the exporter and the CLI's tools.
            *("-c", "max_connections=200"),
        ),
        ports=(layout.ports.postgres,),
        priority=Priority.STORAGE,
        probe=PostgresProbe(f"postgresql://postgres@{HOST}:{layout.ports.postgres}/postgres"),
        user=run_as(),
        stop_signal="INT",  # fast shutdown: roll back open transactions, don't wait for clients
        stop_wait_seconds=30,
        stop_as_group=False,  # the postmaster stops its backends itself
    )


async def ensure_cluster(layout: MeshLayout) -> None:
    """Create the data directory with `initdb` unless it already holds a cluster."""
    data, run = layout.paths.postgres / "data", layout.paths.postgres / "run"
    for directory in (data, run):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    user = run_as()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (layout.paths.postgres, data, run):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        await _run(
            user,
            "test",
            "-w",
            str(data),
            failure=(
                f"the {user} OS user cannot write {data}; PostgreSQL runs as that user, so every "
                "parent directory of the state directory must be traversable (chmod o+x)"
            ),
        )
    if (data / "PG_VERSION").exists():
        return
    await _run(
        user,
        str(bin_dir() / "initdb"),
        *("-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"),
        "--no-sync",  # a fresh, empty cluster: nothing to lose if the machine crashes now
        "--no-instructions",
        failure=f"initdb of {data} failed",
    )


async def _run(user: str | None, *command: str, failure: str) -> None:
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
