"""The contract registry: type name → model, and the upcasters that lift old schema versions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from events.model import NewEvent, RecordedEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class DomainEvent(BaseModel):
    """Base of every contract. `event_type` and `schema_version` are set by `@event_contract`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int]


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event whose type this code does not know: readable, never a crash."""

    event_type: str
    schema_version: int
    data: dict[str, Any]


_CONTRACTS: dict[str, type[DomainEvent]] = {}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}

E = TypeVar("E", bound=type[DomainEvent])


def event_contract(event_type: str, schema_version: int = 1) -> Callable[[E], E]:
    """Register a contract under its type name at its current schema version."""

    def register(model: E) -> E:
        if event_type in _CONTRACTS:
            raise ValueError(f"event type {event_type!r} is registered twice")
        model.event_type = event_type
        model.schema_version = schema_version
        _CONTRACTS[event_type] = model
        return model

    return register


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that lifts `event_type` data from `from_version` to the next."""

    def register(function: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = function
        return function

    return register


def decode(event_type: str, schema_version: int, data: dict[str, Any]) -> DomainEvent | RawEvent:
    """The contract instance for stored data, upcast to the current version first."""
    model = _CONTRACTS.get(event_type)
    if model is None:
        return RawEvent(event_type, schema_version, data)
    version = schema_version
    while version < model.schema_version:
        lift = _UPCASTERS.get((event_type, version))
        if lift is None:
            raise LookupError(f"no upcaster for {event_type} v{version}")
        data, version = lift(data), version + 1
    return model.model_validate(data)


def decode_recorded(event: RecordedEvent) -> DomainEvent | RawEvent:
    return decode(event.type, event.schema_version, event.data)


def to_new_event(event: DomainEvent, metadata: dict[str, Any]) -> NewEvent:
    return NewEvent(
        type=event.event_type,
        data=event.model_dump(mode="json"),
        metadata=metadata,
        schema_version=event.schema_version,
    )
