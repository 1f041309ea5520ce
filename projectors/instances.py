"""The instances read model: every instance with its address and lifecycle state.

Each row also keeps the instance as the JSON the query service answers with (`doc`), rendered
here once per change instead of once per read: a list page is then 50 stored documents, not 500
decoded columns (docs/BENCHMARKS.md, fifth session). `doc_head` holds the fields that never
change, so a state change rewrites the document with the new tail alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from events.contracts import (
    InstanceLaunched,
    InstanceStarted,
    InstanceStopped,
    InstanceTerminated,
    decode_recorded,
)
from projectors.projection import TRACKING_COLUMNS, VersionedTable, foldable, insert

if TYPE_CHECKING:
    from events import RecordedEvent
    from projectors.projection import DbConnection, Statement

_STATE_AFTER = {
    InstanceStarted: "running",
    InstanceStopped: "stopped",
    InstanceTerminated: "terminated",
}

#: The events this read model applies.
_HANDLED = frozenset(
    contract.event_type
    for contract in (InstanceLaunched, InstanceStarted, InstanceStopped, InstanceTerminated)
)


#: The columns `document_head` takes, in its order.
_HEAD_COLUMNS = ("id", "name", "subnet_id", "network_id", "size", "ip", "created_at")


def document_head(
    instance_id: UUID | str,
    name: str,
    subnet_id: UUID | str,
    network_id: UUID | str,
    size: str,
    ip: str,
    created_at: datetime,
) -> str:
    """The fields of an instance's document that never change, without the closing brace."""
    head = {
        "id": str(instance_id),
        "name": name,
        "subnet_id": str(subnet_id),
        "network_id": str(network_id),
        "size": size,
        "ip": ip,
        "created_at": created_at.astimezone(UTC),
    }
    return orjson.dumps(head).decode()[:-1]


def document_tail(state: str, updated_at: datetime, version: int) -> str:
    """The rest of the document after `document_head`: what a state change rewrites."""
    tail = {"state": state, "updated_at": updated_at.astimezone(UTC), "version": version}
    return "," + orjson.dumps(tail).decode()[1:]


class InstancesProjection(VersionedTable):
    name = "instances"

    def __init__(self, version: int = 1) -> None:
        super().__init__(version)
        self._insert = insert(
            self.table,
            (
                *_HEAD_COLUMNS,
                "updated_at",
                "tenant_id",
                "state",
                "version",
                "last_position",
                "doc_head",
                "doc",
            ),
        )
        self._change = foldable(
            self.table,
            f"""UPDATE {self.table} SET state = $2, updated_at = $3, version = $4,
            last_position = $5, doc = doc_head || $6 WHERE id = $1""",
            _changed,
        )

    def create_tables(self) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                id            uuid        PRIMARY KEY,
                tenant_id     text        NOT NULL,
                name          text        NOT NULL,
                subnet_id     uuid        NOT NULL,
                network_id    uuid        NOT NULL,
                size          text        NOT NULL,
                ip            text        NOT NULL,
                state         text        NOT NULL,
{TRACKING_COLUMNS},
                doc_head      text        NOT NULL,
                doc           text        NOT NULL
            )""",
        ]

    def create_indexes(self) -> list[str]:
        # Keyset pagination walks (tenant, created_at, id), optionally filtered.
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table}_tenant "
            f"ON {self.table} (tenant_id, created_at, id)",
            f"CREATE INDEX IF NOT EXISTS {self.table}_subnet "
            f"ON {self.table} (tenant_id, subnet_id, created_at, id)",
            f"CREATE INDEX IF NOT EXISTS {self.table}_network "
            f"ON {self.table} (tenant_id, network_id, created_at, id)",
            # `?state=`: without it a page of a tenant's few pending instances walked all of the
            # tenant's others (2.4 ms for a tenant of 1,398 instances, 43 ms in a longer-lived
            # bench mesh). It costs each state change its HOT update (docs/BENCHMARKS.md, ninth
            # session).
            f"CREATE INDEX IF NOT EXISTS {self.table}_state "
            f"ON {self.table} (tenant_id, state, created_at, id)",
        ]

    def statements(self, event: RecordedEvent) -> list[Statement]:
        if event.type not in _HANDLED:  # the others: no need to decode them
            return []
        contract = decode_recorded(event)
        if isinstance(contract, InstanceLaunched):
            head_fields = (
                contract.instance_id,
                contract.name,
                contract.subnet_id,
                contract.network_id,
                contract.size,
                contract.ip,
                event.recorded_at,
            )
            head = document_head(*head_fields)
            tail = document_tail("pending", event.recorded_at, event.stream_version)
            return [
                (
                    self._insert,
                    (
                        *head_fields,
                        event.recorded_at,
                        event.tenant_id,
                        "pending",
                        event.stream_version,
                        event.position,
                        head,
                        head + tail,
                    ),
                )
            ]
        if isinstance(contract, InstanceStarted | InstanceStopped | InstanceTerminated):
            state = _STATE_AFTER[type(contract)]
            return [
                (
                    self._change,
                    (
                        contract.instance_id,
                        state,
                        event.recorded_at,
                        event.stream_version,
                        event.position,
                        document_tail(state, event.recorded_at, event.stream_version),
                    ),
                )
            ]
        return []

    async def upgrade(self, connection: DbConnection) -> bool:
        """Give a table made by a cloudnet before the stored documents its documents, rendered
        from its columns; a table that has them is left as it is. True if it changed."""
        missing = await connection.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'doc')",
            self.table,
        )
        if not missing:
            return False
        await connection.execute(
            f"ALTER TABLE {self.table} ADD COLUMN doc_head text, ADD COLUMN doc text"
        )
        rows = await connection.fetch(
            f"SELECT {', '.join(_HEAD_COLUMNS)}, state, updated_at, version FROM {self.table}"
        )
        await connection.executemany(
            f"UPDATE {self.table} SET doc_head = $2, doc = $2 || $3 WHERE id = $1",
            [_documents(row) for row in rows],
        )
        await connection.execute(
            f"ALTER TABLE {self.table} ALTER COLUMN doc_head SET NOT NULL, "
            "ALTER COLUMN doc SET NOT NULL"
        )
        return True


def _changed(inserted: tuple[Any, ...], change: tuple[Any, ...]) -> tuple[Any, ...]:
    """`InstancesProjection._change` applied to the values of the row's insert."""
    _, state, updated_at, version, last_position, tail = change
    head = inserted[12]
    return (
        *inserted[:7],
        updated_at,
        inserted[8],
        state,
        version,
        last_position,
        head,
        head + tail,
    )


def _documents(row: Any) -> tuple[Any, str, str]:
    head = document_head(*(row[column] for column in _HEAD_COLUMNS))
    return row["id"], head, document_tail(row["state"], row["updated_at"], row["version"])
