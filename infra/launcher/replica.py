"""`cloudnet up --replica`: a streaming replica of the mesh's own PostgreSQL that the query services
read, as in compose (DESIGN §7). Each `up` clones it afresh from the running, migrated primary, so
a replica that fell behind the primary's recycled WAL never blocks a start.

https://www.postgresql.org/docs/current/hot-standby.html,
https://www.postgresql.org/docs/current/app-pgbasebackup.html
"""

from __future__ import annotations

import asyncio
import shutil
from typing import TYPE_CHECKING

from infra.launcher.errors import LaunchError
from infra.launcher.layout import HOST
from infra.launcher.mesh import POLL_SECONDS, log_tail, wait_ready
from infra.launcher.postgres import REPLICA, bin_dir, own_directories, replica_spec, run_tool

if TYPE_CHECKING:
    from infra.launcher.health import Deadline
    from infra.launcher.layout import MeshLayout
    from infra.launcher.mesh import Progress
    from infra.launcher.supervisor import Supervisor

#: The pg_hba.conf rule that lets pg_basebackup and the replica stream from the primary.
REPLICATION_ACCESS = f"host replication postgres {HOST}/32 trust"

_REPLICA_STATE = """
SELECT pg_is_in_recovery() AS in_recovery, (SELECT status FROM pg_stat_wal_receiver) AS receiver
"""


def allow_replication(layout: MeshLayout) -> None:
    """Let the replica stream from the primary (pg_hba.conf is read when the primary starts):
    initdb's trust setup has such a rule already; a cluster set up otherwise gets one."""
    hba = layout.paths.postgres / "data" / "pg_hba.conf"
    rules = hba.read_text()
    if not any(_allows_replication(rule) for rule in rules.splitlines()):
        added = f"# Added by `cloudnet up --replica`.\n{REPLICATION_ACCESS}\n"
        hba.write_text(f"{rules.rstrip()}\n{added}")


def _allows_replication(rule: str) -> bool:
    fields = rule.split()
    return (
        fields[:2] == ["host", "replication"]
        and fields[2:3] in (["all"], ["postgres"])
        and fields[3:] == [f"{HOST}/32", "trust"]
    )


async def start_replica(
    layout: MeshLayout, supervisor: Supervisor, deadline: Deadline, progress: Progress
) -> None:
    """Clone the primary, start the replica and return once it streams from the primary."""
    await clone(layout)
    supervisor.start(REPLICA)
    await wait_ready(supervisor, [replica_spec(layout)], deadline, progress, paths=layout.paths)
    await wait_streaming(layout, deadline)


async def clone(layout: MeshLayout) -> None:
    """A base backup of the running primary; `-R` makes it a standby that streams from it."""
    directory = layout.paths.postgres_replica
    shutil.rmtree(directory / "data", ignore_errors=True)
    user = await own_directories(directory, directory / "run")
    await run_tool(
        user,
        str(bin_dir() / "pg_basebackup"),
        *("--host", HOST, "--port", str(layout.ports.postgres), "--username", "postgres"),
        *("--pgdata", str(directory / "data"), "--write-recovery-conf", "--wal-method=stream"),
        "--checkpoint=fast",  # the default spreads the checkpoint over minutes
        "--no-sync",  # a copy `up` makes again each time: nothing to lose in a crash
        failure=f"pg_basebackup of the primary into {directory / 'data'} failed",
    )


async def wait_streaming(layout: MeshLayout, deadline: Deadline) -> None:
    """Return once the replica is in recovery and its WAL receiver streams: a standby with a
    wrong primary_conninfo accepts connections too, but never sees another write."""
    import asyncpg  # lazily, as in the probes: only `up --replica` needs the driver here

    if layout.read_database_url is None:
        raise LaunchError("this mesh has no replica to wait for")
    try:
        connection = await asyncpg.connect(layout.read_database_url)
    except Exception as error:  # whatever the driver raises, `up` reports it in one line
        raise LaunchError(
            f"cannot connect to {REPLICA}: {type(error).__name__}: {error}",
            log=log_tail(layout.paths, REPLICA),
            program=REPLICA,
        ) from error
    try:
        while (state := await connection.fetchrow(_REPLICA_STATE))["receiver"] != "streaming":
            if not state["in_recovery"]:
                raise LaunchError(f"{REPLICA} is not in recovery: it is no replica")
            if deadline.expired:
                raise LaunchError(
                    f"{REPLICA} does not stream from the primary "
                    f"(WAL receiver: {state['receiver'] or 'not running'})",
                    log=log_tail(layout.paths, REPLICA),
                    program=REPLICA,
                )
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await connection.close()
