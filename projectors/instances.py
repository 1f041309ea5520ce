"""The instances read model: every instance with its address and lifecycle state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from events.contracts import (
    InstanceLaunched,
    InstanceStarted,
    InstanceStopped,
    InstanceTerminated,
    decode_recorded,
)
from projectors.projection import TRACKING_COLUMNS, VersionedTable

if TYPE_CHECKING:
    from events import RecordedEvent
    from projectors.projection import Statement

_STATE_AFTER = {
    InstanceStarted: "running",
    InstanceStopped: "stopped",
    InstanceTerminated: "terminated",
}


class InstancesProjection(VersionedTable):
    name = "instances"

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
{TRACKING_COLUMNS}
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
        ]

    def statements(self, event: RecordedEvent) -> list[Statement]:
        contract = decode_recorded(event)
        if isinstance(contract, InstanceLaunched):
            return [
                (
                    f"""INSERT INTO {self.table} (id, tenant_id, name, subnet_id, network_id, size,
                    ip, state, created_at, updated_at, version, last_position)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8, $9, $10)""",
                    (
                        contract.instance_id,
                        event.tenant_id,
                        contract.name,
                        contract.subnet_id,
                        contract.network_id,
                        contract.size,
                        contract.ip,
                        event.recorded_at,
                        event.stream_version,
                        event.position,
                    ),
                )
            ]
        if isinstance(contract, InstanceStarted | InstanceStopped | InstanceTerminated):
            return [
                (
                    f"""UPDATE {self.table} SET state = $2, updated_at = $3, version = $4,
                    last_position = $5 WHERE id = $1""",
                    (
                        contract.instance_id,
                        _STATE_AFTER[type(contract)],
                        event.recorded_at,
                        event.stream_version,
                        event.position,
                    ),
                )
            ]
        return []
