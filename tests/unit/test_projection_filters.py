"""Each projection skips, without decoding them, the event types it does not apply: the skip
must never drop an event the projection would have applied (a type missing from its list)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

import events.contracts
from events import Checkpoint, RecordedEvent
from events.contracts import DomainEvent, to_new_event
from projectors import instances, networks, subnets
from projectors.provisioner import boots

_VALUES: dict[Any, Any] = {uuid.UUID: uuid.uuid4, str: lambda: "10.0.0.0/24"}

#: One event of every registered contract, its fields filled in.
EVERY_CONTRACT = [
    contract(**{name: _VALUES[field.annotation]() for name, field in contract.model_fields.items()})
    for contract in (getattr(events.contracts, name) for name in events.contracts.__all__)
    if isinstance(contract, type)
    and issubclass(contract, DomainEvent)
    and contract is not DomainEvent
]


def recorded(contract: DomainEvent, position: int) -> RecordedEvent:
    new = to_new_event(contract, {"tenant_id": "t"})
    return RecordedEvent(
        position=position,
        checkpoint=Checkpoint(1, position),
        stream_id=f"s-{position}",
        stream_version=1,
        event_id=uuid.uuid4(),
        type=new.type,
        schema_version=new.schema_version,
        data=new.data,
        metadata=new.metadata,
        recorded_at=datetime(2026, 11, 29, tzinfo=UTC),
    )


PROJECTIONS: list[tuple[ModuleType, Any]] = [
    (networks, networks.NetworksProjection()),
    (subnets, subnets.SubnetsProjection()),
    (instances, instances.InstancesProjection()),
    (boots, boots.PendingBoots()),
]


def test_every_contract_is_covered() -> None:
    assert len(EVERY_CONTRACT) == 13


@pytest.mark.parametrize(("module", "projection"), PROJECTIONS, ids=lambda p: str(p)[:30])
def test_a_projection_skips_only_what_it_would_not_apply(
    module: ModuleType, projection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = [recorded(contract, n) for n, contract in enumerate(EVERY_CONTRACT, start=1)]
    filtered = [projection.statements(event) for event in every]
    name = "_HANDLED" if hasattr(module, "_HANDLED") else "_WATCHED"
    monkeypatch.setattr(module, name, frozenset(event.type for event in every))
    decoded = [projection.statements(event) for event in every]
    assert filtered == decoded
    assert any(decoded)  # it applies some of them
