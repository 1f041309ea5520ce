"""CloudEvents batches, checkpoints and cursors survive a round trip unchanged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from events import Checkpoint, RecordedEvent
from events.cloudevents import decode_batch, encode_batch
from events.contracts import NetworkCreated, decode
from events.contracts.registry import RawEvent
from infra.problems import ValidationFailed
from query_api.pagination import decode_cursor, encode_cursor


def recorded(position: int, **metadata: str) -> RecordedEvent:
    network_id = uuid.uuid4()
    return RecordedEvent(
        position=position,
        checkpoint=Checkpoint(2**40 + position, position),
        stream_id=f"network-{network_id}",
        stream_version=1,
        event_id=uuid.uuid4(),
        type="NetworkCreated",
        schema_version=1,
        data={"network_id": str(network_id), "name": "prod", "cidr": "10.0.0.0/16"},
        metadata=metadata,
        recorded_at=datetime.now(UTC),
    )


def test_a_batch_is_a_cloudevents_json_batch_and_round_trips() -> None:
    events = [recorded(7, tenant_id="acme", actor="alice", correlation_id="r1"), recorded(9)]
    body = encode_batch(events)
    envelopes = orjson.loads(body)
    assert [e["specversion"] for e in envelopes] == ["1.0", "1.0"]
    assert envelopes[0]["subject"] == events[0].stream_id
    assert envelopes[0]["position"] == "7"  # 64-bit values travel as strings
    assert envelopes[0]["tenantid"] == "acme"
    assert decode_batch(body) == events


def test_checkpoints_order_by_transaction_then_position_and_parse_back() -> None:
    assert Checkpoint(5, 100) < Checkpoint(6, 1)
    assert Checkpoint.parse(str(Checkpoint(2**50, 3))) == Checkpoint(2**50, 3)


def test_known_types_decode_to_contracts_and_unknown_ones_stay_raw() -> None:
    network_id = uuid.uuid4()
    data = {"network_id": str(network_id), "name": "n", "cidr": "10.0.0.0/16"}
    assert decode("NetworkCreated", 1, data) == NetworkCreated(
        network_id=network_id, name="n", cidr="10.0.0.0/16"
    )
    assert decode("SomethingNew", 3, {"x": 1}) == RawEvent("SomethingNew", 3, {"x": 1})


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    key = ["2026-11-29T00:00:00+00:00", str(uuid.uuid4())]
    assert decode_cursor(encode_cursor(key), 2) == key
    assert decode_cursor(None, 2) is None
    for bad in ["!!!", encode_cursor(["only-one"]), "e30"]:
        with pytest.raises(ValidationFailed):
            decode_cursor(bad, 2)
