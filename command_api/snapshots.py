"""Snapshots of long streams for the command side: a cache of folded state, never the truth.

A subnet's stream grows by two events per instance (allocate, release), so it is the one worth
snapshotting; networks and instances stay short. A snapshot whose schema version is not the
codec's is ignored (the stream is folded from the start), so changing the state shape only
needs a version bump.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from immutables import Map

from command_api.domain import subnet
from events import Snapshot

#: Take a new snapshot once a stream has grown this many events past the last one, or half the
#: state's size if that is more (`due`).
SNAPSHOT_EVERY = 50


class SnapshotCodec(Protocol):
    schema_version: int

    def size(self, state: Any) -> int:
        """How many entries a snapshot of `state` holds: what taking one costs."""
        ...

    def dump(self, state: Any) -> dict[str, Any]: ...

    def load(self, data: dict[str, Any]) -> Any: ...


class SubnetCodec:
    schema_version = 1

    def size(self, state: subnet.Subnet | None) -> int:
        return 0 if state is None else len(state.allocations)

    def dump(self, state: subnet.Subnet) -> dict[str, Any]:
        return {
            "id": str(state.id),
            "network_id": str(state.network_id),
            "name": state.name,
            "cidr": state.cidr,
            "allocations": {ip: str(owner) for ip, owner in state.allocations.items()},
            "deleted": state.deleted,
        }

    def load(self, data: dict[str, Any]) -> subnet.Subnet:
        return subnet.Subnet.restore(
            id=uuid.UUID(data["id"]),
            network_id=uuid.UUID(data["network_id"]),
            name=data["name"],
            cidr=data["cidr"],
            allocations=Map({ip: uuid.UUID(owner) for ip, owner in data["allocations"].items()}),
            deleted=data["deleted"],
        )


CODECS: dict[str, SnapshotCodec] = {"subnet": SubnetCodec()}


@dataclass(frozen=True, slots=True)
class Restored:
    state: Any
    version: int
    position: int


def codec_for(stream_id: str) -> SnapshotCodec | None:
    return CODECS.get(stream_id.partition("-")[0])


def due(codec: SnapshotCodec, state: Any, events_since: int) -> bool:
    """Whether a stream `events_since` events past its last snapshot is due a new one.

    Every `SNAPSHOT_EVERY` events while the state is small; then once the events since reach
    half its size. A snapshot costs as much as the state is large (a subnet with 2,000 instances
    wrote 2,000 entries for every 50 launches, in the launch's own request), so the pause grows
    with the state: a growing subnet is snapshotted each time it has doubled (a constant cost per
    event), and a load folds fewer events past its snapshot than half the state it ends with."""
    return events_since >= max(SNAPSHOT_EVERY, codec.size(state) // 2)


def restore(snapshot: Snapshot | None, codec: SnapshotCodec, tenant_id: str) -> Restored | None:
    """The snapshot's state if it is usable; raises LookupError if it is another tenant's."""
    if snapshot is None or snapshot.schema_version != codec.schema_version:
        return None
    if snapshot.state["tenant_id"] != tenant_id:
        raise LookupError(snapshot.stream_id)
    return Restored(
        codec.load(snapshot.state["state"]), snapshot.stream_version, snapshot.state["position"]
    )


def take(
    stream_id: str, codec: SnapshotCodec, state: Any, version: int, position: int, tenant_id: str
) -> Snapshot:
    data = {"tenant_id": tenant_id, "position": position, "state": codec.dump(state)}
    return Snapshot(stream_id, version, codec.schema_version, data)
