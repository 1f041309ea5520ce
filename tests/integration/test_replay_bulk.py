"""A rebuild loads a fresh table's inserted rows with binary COPY: the model it builds is the one
the live projector built statement by statement (real PostgreSQL, a database of the test's
own)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from events import EventStore, ExpectedVersion
from events.contracts import InstanceLaunched, InstanceStarted, InstanceStopped, to_new_event
from projectors import replay
from projectors.instances import InstancesProjection
from projectors.runtime import ProjectionRunner


async def test_a_rebuilt_instances_model_equals_the_live_one(
    own_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    metadata = {"tenant_id": "t-bulk"}
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
            [to_new_event(event, metadata) for event in events],
            ExpectedVersion.NO_STREAM,
        )
    live = ProjectionRunner(own_store, InstancesProjection(1))
    assert await live.catch_up() > 0  # statement by statement, as the projector does

    copies: list[str] = []
    copy = asyncpg.connection.Connection.copy_records_to_table

    async def counted(self: asyncpg.Connection, table: str, **options: Any) -> str:
        copies.append(table)
        return str(await copy(self, table, **options))

    monkeypatch.setattr(asyncpg.connection.Connection, "copy_records_to_table", counted)
    assert await replay.verify(own_store, "instances") == []  # built aside, row for row
    assert copies == ["rm_instances_v2"]  # the 30 launches, as one COPY
