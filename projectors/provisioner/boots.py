"""Pending boots: which launched instances still wait for the provisioner, and since when."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from events.contracts import InstanceLaunched, InstanceStarted, InstanceTerminated, decode_recorded

if TYPE_CHECKING:
    from events import RecordedEvent
    from projectors.projection import Statement


#: The events that start or end a boot.
_WATCHED = frozenset(
    contract.event_type for contract in (InstanceLaunched, InstanceStarted, InstanceTerminated)
)


class PendingBoots:
    """A projection only the provisioner reads (no view, never served by the query API)."""

    name = "provisioner"

    def __init__(self, boot_delay_seconds: float = 1.0, version: int = 1) -> None:
        self.version = version
        self.boot_delay = timedelta(seconds=boot_delay_seconds)
        self.table = f"provisioner_boots_v{version}"

    def tables(self) -> list[str]:
        return [self.table]

    def create_tables(self) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                instance_id uuid        PRIMARY KEY,
                tenant_id   text        NOT NULL,
                due_at      timestamptz NOT NULL,
                attempts    integer     NOT NULL DEFAULT 0,
                traceparent text
            )""",
        ]

    def create_indexes(self) -> list[str]:
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table}_due ON {self.table} (due_at)",
        ]

    def create_view(self) -> list[str]:
        return []

    def statements(self, event: RecordedEvent) -> list[Statement]:
        if event.type not in _WATCHED:  # most events: no need to decode them
            return []
        contract = decode_recorded(event)
        if isinstance(contract, InstanceLaunched):
            return [
                (
                    f"INSERT INTO {self.table} (instance_id, tenant_id, due_at, traceparent) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    (
                        contract.instance_id,
                        event.tenant_id,
                        event.recorded_at + self.boot_delay,
                        event.metadata.get("traceparent"),
                    ),
                )
            ]
        if isinstance(contract, InstanceStarted | InstanceTerminated):
            return [(f"DELETE FROM {self.table} WHERE instance_id = $1", (contract.instance_id,))]
        return []
