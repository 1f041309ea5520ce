"""The networks read model: one row per live network, with its subnet count, per tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from events.contracts import (
    NetworkCreated,
    NetworkDeleted,
    NetworkRenamed,
    SubnetAttached,
    SubnetDetached,
    decode_recorded,
)
from projectors.projection import TRACKING_COLUMNS, TRACKING_NAMES, VersionedTable, insert

if TYPE_CHECKING:
    from events import RecordedEvent
    from projectors.projection import Statement

#: The events this read model applies.
_HANDLED = frozenset(
    contract.event_type
    for contract in (NetworkCreated, NetworkDeleted, NetworkRenamed, SubnetAttached, SubnetDetached)
)


class NetworksProjection(VersionedTable):
    name = "networks"

    def __init__(self, version: int = 1) -> None:
        super().__init__(version)
        self._insert = insert(self.table, ("id", "tenant_id", "name", "cidr", *TRACKING_NAMES))

    def create_tables(self) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                id            uuid        PRIMARY KEY,
                tenant_id     text        NOT NULL,
                name          text        NOT NULL,
                cidr          text        NOT NULL,
                subnet_count  integer     NOT NULL DEFAULT 0,
{TRACKING_COLUMNS}
            )""",
        ]

    def create_indexes(self) -> list[str]:
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table}_tenant "
            f"ON {self.table} (tenant_id, created_at, id)",
        ]

    def statements(self, event: RecordedEvent) -> list[Statement]:
        if event.type not in _HANDLED:  # the others: no need to decode them
            return []
        contract = decode_recorded(event)
        if isinstance(contract, NetworkCreated):
            return [
                (
                    self._insert,
                    (
                        contract.network_id,
                        event.tenant_id,
                        contract.name,
                        contract.cidr,
                        event.recorded_at,
                        event.recorded_at,
                        event.stream_version,
                        event.position,
                    ),
                )
            ]
        if isinstance(contract, NetworkDeleted):
            return [(f"DELETE FROM {self.table} WHERE id = $1", (contract.network_id,))]
        if not isinstance(contract, NetworkRenamed | SubnetAttached | SubnetDetached):
            return []
        change = {
            NetworkRenamed: "name = $5",
            SubnetAttached: "subnet_count = subnet_count + 1",
            SubnetDetached: "subnet_count = subnet_count - 1",
        }[type(contract)]
        arguments: tuple[object, ...] = (
            contract.network_id,
            event.recorded_at,
            event.stream_version,
            event.position,
        )
        if isinstance(contract, NetworkRenamed):
            arguments += (contract.name,)
        return [
            (
                f"""UPDATE {self.table} SET {change}, updated_at = $2, version = $3,
                last_position = $4 WHERE id = $1""",
                arguments,
            )
        ]
