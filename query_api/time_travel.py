"""`GET /v1/networks/{id}?as_of=N`: the network as it was at global position N, folded from its
own stream (the read model only knows the present)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from events.contracts import (
    NetworkCreated,
    NetworkDeleted,
    NetworkRenamed,
    SubnetAttached,
    SubnetDetached,
    decode,
)


def network_as_of(history: Sequence[asyncpg.Record]) -> dict[str, Any] | None:
    """The network after the given events, or None if it did not exist (or was deleted)."""
    network: dict[str, Any] | None = None
    for row in history:
        event = decode(row["type"], row["schema_version"], row["data"])
        if isinstance(event, NetworkCreated):
            network = {
                "id": event.network_id,
                "name": event.name,
                "cidr": event.cidr,
                "created_at": row["recorded_at"],
                "subnets": {},
            }
        elif network is None:
            continue
        elif isinstance(event, NetworkRenamed):
            network["name"] = event.name
        elif isinstance(event, SubnetAttached):
            network["subnets"][event.subnet_id] = {"id": event.subnet_id, "cidr": event.cidr}
        elif isinstance(event, SubnetDetached):
            network["subnets"].pop(event.subnet_id, None)
        elif isinstance(event, NetworkDeleted):
            network = None
            continue
        network.update(
            updated_at=row["recorded_at"], version=row["stream_version"], position=row["position"]
        )
    if network is None:
        return None
    subnets = list(network.pop("subnets").values())
    return {**network, "subnet_count": len(subnets), "subnets": subnets}
