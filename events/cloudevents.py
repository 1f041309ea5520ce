"""Events on the wire: the CloudEvents 1.0 JSON batch format (`application/cloudevents-batch+json`).

Any consumer can read a batch without our code. cloudnet's own attributes are CloudEvents
extensions: `position` and `transactionid` as strings (they are 64-bit; the spec's Integer is
32-bit), `streamversion`, `schemaversion`, `tenantid`, `correlationid`, `causationid`, `actor`,
and `traceparent` from the Distributed Tracing extension.
See https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md#4-json-batch-format
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from events.model import Checkpoint, RecordedEvent

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
SOURCE = "/cloudnet/events"
#: Message header naming the checkpoint the relay read after: a consumer whose own checkpoint is
#: older than this has missed a batch and catches up from the store.
PREVIOUS_CHECKPOINT_HEADER = "cloudnet-previous-checkpoint"
LAST_CHECKPOINT_HEADER = "cloudnet-last-checkpoint"

_METADATA_EXTENSIONS = {
    "tenant_id": "tenantid",
    "correlation_id": "correlationid",
    "causation_id": "causationid",
    "actor": "actor",
    "traceparent": "traceparent",
}


def to_cloudevent(event: RecordedEvent) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event.event_id),
        "source": SOURCE,
        "type": event.type,
        "subject": event.stream_id,
        "time": event.recorded_at.isoformat(),
        "datacontenttype": "application/json",
        "data": event.data,
        "position": str(event.position),
        "transactionid": str(event.checkpoint.transaction_id),
        "streamversion": event.stream_version,
        "schemaversion": event.schema_version,
    }
    for key, extension in _METADATA_EXTENSIONS.items():
        value = event.metadata.get(key)
        if value is not None:
            envelope[extension] = str(value)
    return envelope


def from_cloudevent(envelope: dict[str, Any]) -> RecordedEvent:
    position = int(envelope["position"])
    metadata = {
        key: envelope[extension]
        for key, extension in _METADATA_EXTENSIONS.items()
        if extension in envelope
    }
    return RecordedEvent(
        position=position,
        checkpoint=Checkpoint(int(envelope["transactionid"]), position),
        stream_id=envelope["subject"],
        stream_version=int(envelope["streamversion"]),
        event_id=uuid.UUID(envelope["id"]),
        type=envelope["type"],
        schema_version=int(envelope.get("schemaversion", 1)),
        data=envelope.get("data") or {},
        metadata=metadata,
        recorded_at=datetime.fromisoformat(envelope["time"]),
    )


def encode_batch(events: list[RecordedEvent]) -> bytes:
    return orjson.dumps([to_cloudevent(event) for event in events])


def decode_batch(body: bytes) -> list[RecordedEvent]:
    return [from_cloudevent(envelope) for envelope in orjson.loads(body)]
