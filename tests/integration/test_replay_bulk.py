"""A rebuild loads a fresh table's inserted rows with binary COPY, each row as the batch's later
changes of it leave it: the model it builds is the one the live projector built statement by
statement (real PostgreSQL, a database of the test's own)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from events import EventStore, ExpectedVersion
from events.contracts import (
    InstanceLaunched,
    InstanceStarted,
    InstanceStopped,
    IpAllocated,
    IpReleased,
    SubnetCreated,
    to_new_event,
)
from projectors import replay
from projectors.instances import InstancesProjection
from projectors.runtime import ProjectionRunner
from projectors.subnets import SubnetsProjection

METADATA = {"tenant_id": "t-bulk"}


class Writes:
    """What a rebuild sent: the tables it COPYed into and the statements it ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.copies: list[str] = []
        self.statements: list[str] = []
        connection = asyncpg.connection.Connection
        copy, execute, executemany = (
            connection.copy_records_to_table,
            connection.execute,
            connection.executemany,
        )

        async def counted_copy(conn: asyncpg.Connection, table: str, **options: Any) -> str:
            self.copies.append(table)
            return str(await copy(conn, table, **options))

        async def counted_execute(conn: asyncpg.Connection, sql: str, *args: Any, **kw: Any) -> Any:
            self.statements.append(sql)
            return await execute(conn, sql, *args, **kw)

        async def counted_many(conn: asyncpg.Connection, sql: str, *args: Any, **kw: Any) -> Any:
            self.statements.append(sql)
            return await executemany(conn, sql, *args, **kw)

        monkeypatch.setattr(connection, "copy_records_to_table", counted_copy)
        monkeypatch.setattr(connection, "execute", counted_execute)
        monkeypatch.setattr(connection, "executemany", counted_many)

    def updates_of(self, table: str) -> list[str]:
        return [s for s in self.statements if s.lstrip().startswith(f"UPDATE {table} ")]


async def test_a_rebuilt_instances_model_equals_the_live_one(
    own_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(30):  # launched, then for some started, and for some stopped again
        instance = uuid.uuid4()
        events: list[Any] = [
            InstanceLaunched(
                instance_id=instance,
                name=f"vm-{n}",
                subnet_id=uuid.uuid4(),
                network_id=uuid.uuid4(),
                size="small",
                ip=f"10.0.0.{n + 4}",
            )
        ]
        if n % 3:
            events.append(InstanceStarted(instance_id=instance))
        if n % 3 == 2:
            events.append(InstanceStopped(instance_id=instance))
        await own_store.append(
            f"instance-{instance}",
            [to_new_event(event, METADATA) for event in events],
            ExpectedVersion.NO_STREAM,
        )
    live = ProjectionRunner(own_store, InstancesProjection(1))
    assert await live.catch_up() > 0  # statement by statement, as the projector does

    writes = Writes(monkeypatch)
    assert await replay.verify(own_store, "instances") == []  # built aside, row for row
    assert writes.copies == ["rm_instances_v2"]  # the 30 launches, as one COPY
    assert writes.updates_of("rm_instances_v2") == []  # their starts and stops folded into it


async def test_a_rebuilt_subnets_model_equals_the_live_one(
    own_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(4):  # each subnet: created, n + 2 addresses taken, one given back
        subnet, instances = uuid.uuid4(), [uuid.uuid4() for _ in range(n + 2)]
        events: list[Any] = [
            SubnetCreated(
                subnet_id=subnet, network_id=uuid.uuid4(), name=f"s{n}", cidr="10.0.0.0/24"
            )
        ]
        events += [
            IpAllocated(subnet_id=subnet, instance_id=instance, ip=f"10.0.0.{i + 4}")
            for i, instance in enumerate(instances)
        ]
        events.append(IpReleased(subnet_id=subnet, instance_id=instances[0], ip="10.0.0.4"))
        await own_store.append(
            f"subnet-{subnet}",
            [to_new_event(event, METADATA) for event in events],
            ExpectedVersion.NO_STREAM,
        )
    live = ProjectionRunner(own_store, SubnetsProjection(1))
    assert await live.catch_up() > 0
    used = await own_store.pool.fetch("SELECT used FROM rm_subnets_v1 ORDER BY used")
    assert [row["used"] for row in used] == [1, 2, 3, 4]

    writes = Writes(monkeypatch)
    assert await replay.verify(own_store, "subnets") == []
    assert writes.copies == ["rm_subnets_v2"]
    assert writes.updates_of("rm_subnets_v2") == []
