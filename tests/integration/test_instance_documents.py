"""The instances read model stores each instance as the JSON the query service answers with:
the document must say what the row's columns say, through every change, and a table made by an
older cloudnet gets its documents on migrate (real PostgreSQL, a database of each test's own)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from events import EventStore, ExpectedVersion
from events.contracts import (
    DomainEvent,
    InstanceLaunched,
    InstanceStarted,
    InstanceStopped,
    to_new_event,
)
from infra.database import migrate
from projectors.instances import InstancesProjection

#: The answer as the query service rendered it from the columns before the documents.
COLUMNS = (
    "SELECT id::text, name, subnet_id::text, network_id::text, size, ip, state, created_at, "
    "updated_at, version FROM rm_instances WHERE id = $1"
)


async def project(store: EventStore, instance: uuid.UUID, *events: DomainEvent) -> None:
    """Append the events to the instance's stream and apply every new one to the read model."""
    new = [to_new_event(event, {"tenant_id": "t-documents"}) for event in events]
    await store.append(f"instance-{instance}", new, ExpectedVersion.ANY)
    done = await store.pool.fetchval("SELECT coalesce(max(last_position), 0) FROM rm_instances")
    projection = InstancesProjection(1)
    async with store.pool.acquire() as connection, connection.transaction():
        for event in await store.read_all():
            if event.position > done:  # one appender: positions are commit order here
                for sql, arguments in projection.statements(event):
                    await connection.execute(sql, *arguments)


async def answers(store: EventStore, instance: uuid.UUID) -> tuple[dict[str, Any], Any]:
    """The instance rendered from its columns, and its stored document, both parsed."""
    row = await store.pool.fetchrow(COLUMNS, instance)
    document = await store.pool.fetchval("SELECT doc FROM rm_instances WHERE id = $1", instance)
    return orjson.loads(orjson.dumps(dict(row))), orjson.loads(document)


def launched(instance: uuid.UUID, name: str = "vm") -> InstanceLaunched:
    return InstanceLaunched(
        instance_id=instance,
        name=name,
        subnet_id=uuid.uuid4(),
        network_id=uuid.uuid4(),
        size="small",
        ip="10.0.1.4",
    )


async def test_the_document_says_what_the_columns_say_through_every_change(
    own_store: EventStore,
) -> None:
    instance = uuid.uuid4()
    # Quotes, a backslash, a newline and non-ASCII text must come out as JSON renders them.
    await project(own_store, instance, launched(instance, 'web "é" \\ 1\n'))
    from_columns, document = await answers(own_store, instance)
    assert document == from_columns
    assert document["state"] == "pending"
    assert document["name"] == 'web "é" \\ 1\n'

    await project(own_store, instance, InstanceStarted(instance_id=instance))
    await project(own_store, instance, InstanceStopped(instance_id=instance))
    from_columns, document = await answers(own_store, instance)
    assert document == from_columns
    assert (document["state"], document["version"]) == ("stopped", 3)
    assert document["updated_at"] > document["created_at"]


async def test_a_table_made_before_the_documents_gets_them_on_migrate(
    own_database: str, own_store: EventStore
) -> None:
    instances = [uuid.uuid4() for _ in range(3)]
    for number, instance in enumerate(instances):
        await project(own_store, instance, launched(instance, f"vm-{number}"))
    await project(own_store, instances[0], InstanceStarted(instance_id=instances[0]))
    expected = {
        instance: await own_store.pool.fetchval(
            "SELECT doc FROM rm_instances WHERE id = $1", instance
        )
        for instance in instances
    }
    # The table and view as a cloudnet before the documents made them.
    await own_store.pool.execute(
        "DROP VIEW rm_instances; "
        "ALTER TABLE rm_instances_v1 DROP COLUMN doc, DROP COLUMN doc_head; "
        "CREATE VIEW rm_instances AS SELECT * FROM rm_instances_v1"
    )

    await migrate(own_database)

    stored = await own_store.pool.fetch("SELECT id, doc FROM rm_instances")
    assert {row["id"]: row["doc"] for row in stored} == expected
    # The new code's statements work on the upgraded table, and a second migrate changes nothing.
    await project(own_store, instances[1], InstanceStarted(instance_id=instances[1]))
    from_columns, document = await answers(own_store, instances[1])
    assert document == from_columns
    assert document["state"] == "running"
    await migrate(own_database)
    assert (
        await own_store.pool.fetchval("SELECT doc FROM rm_instances WHERE id = $1", instances[1])
        == orjson.dumps(document).decode()
    )
