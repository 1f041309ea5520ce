"""Where the relay's batches go: a small port and its RabbitMQ (FastStream) adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange

from events.cloudevents import (
    BATCH_CONTENT_TYPE,
    LAST_CHECKPOINT_HEADER,
    PREVIOUS_CHECKPOINT_HEADER,
    encode_batch,
)

if TYPE_CHECKING:
    from events.model import Checkpoint, RecordedEvent

ROUTING_KEY = "cloudnet.events.batch"


def events_exchange(name: str) -> RabbitExchange:
    """The durable topic exchange every batch goes to (consumers bind their own queues)."""
    return RabbitExchange(name, type=ExchangeType.TOPIC, durable=True)


class BatchPublisher(Protocol):
    """Publishes one ordered batch of events and returns only once the broker has it."""

    async def publish(self, events: list[RecordedEvent], previous: Checkpoint) -> None:
        """`previous` is the checkpoint the batch was read after (consumers detect gaps)."""
        ...


class RabbitBatchPublisher:
    """Persistent messages with publisher confirms (FastStream's default channel confirms).

    See https://faststream.ag2.ai/latest/rabbit/publishing/
    """

    def __init__(self, broker: RabbitBroker, exchange: str) -> None:
        self.broker = broker
        self.exchange = events_exchange(exchange)

    async def declare(self) -> None:
        await self.broker.declare_exchange(self.exchange)

    async def publish(self, events: list[RecordedEvent], previous: Checkpoint) -> None:
        first, last = events[0].checkpoint, events[-1].checkpoint
        await self.broker.publish(
            encode_batch(events),
            exchange=self.exchange,
            routing_key=ROUTING_KEY,
            persist=True,
            mandatory=False,  # no queue bound yet is fine: consumers catch up from the store
            content_type=BATCH_CONTENT_TYPE,
            message_id=f"{first}-{last}",
            headers={PREVIOUS_CHECKPOINT_HEADER: str(previous), LAST_CHECKPOINT_HEADER: str(last)},
        )
