"""The subnets read model: each live subnet with its `total`, `used` and `free` addresses."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from events.contracts import (
    IpAllocated,
    IpReleased,
    SubnetCreated,
    SubnetDeleted,
    decode_recorded,
)
from projectors.projection import (
    TRACKING_COLUMNS,
    TRACKING_NAMES,
    VersionedTable,
    foldable,
    insert,
)

if TYPE_CHECKING:
    from events import RecordedEvent
    from projectors.projection import Statement

#: Reserved per subnet, as in AWS: the first four addresses and the last.
RESERVED = 5

#: The events this read model applies.
_HANDLED = frozenset(
    contract.event_type for contract in (SubnetCreated, IpAllocated, IpReleased, SubnetDeleted)
)


class SubnetsProjection(VersionedTable):
    name = "subnets"

    def __init__(self, version: int = 1) -> None:
        super().__init__(version)
        self._insert = insert(
            self.table,
            ("id", "tenant_id", "network_id", "name", "cidr", "total", "used", *TRACKING_NAMES),
        )
        self._count = foldable(
            self.table,
            f"""UPDATE {self.table} SET used = used + $2, updated_at = $3, version = $4,
            last_position = $5 WHERE id = $1""",
            _counted,
        )

    def create_tables(self) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                id            uuid        PRIMARY KEY,
                tenant_id     text        NOT NULL,
                network_id    uuid        NOT NULL,
                name          text        NOT NULL,
                cidr          text        NOT NULL,
                total         integer     NOT NULL,
                used          integer     NOT NULL DEFAULT 0,
{TRACKING_COLUMNS}
            )""",
        ]

    def create_indexes(self) -> list[str]:
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table}_network "
            f"ON {self.table} (tenant_id, network_id, created_at, id)",
        ]

    def create_view(self) -> list[str]:
        return [
            f"CREATE OR REPLACE VIEW rm_subnets AS SELECT *, total - used AS free FROM {self.table}"
        ]

    def statements(self, event: RecordedEvent) -> list[Statement]:
        if event.type not in _HANDLED:  # the others: no need to decode them
            return []
        contract = decode_recorded(event)
        if isinstance(contract, SubnetCreated):
            total = max(0, ipaddress.IPv4Network(contract.cidr).num_addresses - RESERVED)
            return [
                (
                    self._insert,
                    (
                        contract.subnet_id,
                        event.tenant_id,
                        contract.network_id,
                        contract.name,
                        contract.cidr,
                        total,
                        0,
                        event.recorded_at,
                        event.recorded_at,
                        event.stream_version,
                        event.position,
                    ),
                )
            ]
        if isinstance(contract, IpAllocated | IpReleased):
            delta = 1 if isinstance(contract, IpAllocated) else -1
            return [
                (
                    self._count,
                    (
                        contract.subnet_id,
                        delta,
                        event.recorded_at,
                        event.stream_version,
                        event.position,
                    ),
                )
            ]
        if isinstance(contract, SubnetDeleted):
            return [(f"DELETE FROM {self.table} WHERE id = $1", (contract.subnet_id,))]
        return []


def _counted(inserted: tuple[Any, ...], change: tuple[Any, ...]) -> tuple[Any, ...]:
    """`SubnetsProjection._count` applied to the values of the row's insert."""
    _, delta, updated_at, version, last_position = change
    created_at = inserted[7]
    return (*inserted[:6], inserted[6] + delta, created_at, updated_at, version, last_position)
