"""Feeds a group of projections from one durable RabbitMQ queue (FastStream).

One queue per process kind (the projector's read models and the provisioner's pending boots
together), bound to the events exchange, with single active consumer: several processes may
run, exactly one applies the batches at a time and the others take over when it dies. A message
is acked only after its transaction commits. See https://faststream.ag2.ai/latest/rabbit/ack/
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue
from opentelemetry.trace import SpanKind

from events.cloudevents import PREVIOUS_CHECKPOINT_HEADER, decode_batch
from events.model import Checkpoint
from events.relay.publisher import events_exchange
from infra.telemetry import event_spans
from projectors.group import ProjectionGroup

if TYPE_CHECKING:
    from projectors.runtime import ProjectionRunner


#: Batches delivered to a consumer before it acks the first.
PREFETCH = 8


def queue_name(exchange: str, name: str) -> str:
    return f"{exchange}.{name}"


def projection_queue(exchange: str, name: str) -> RabbitQueue:
    """The queue of one group (not per version: a replay's swap keeps the queue)."""
    return RabbitQueue(
        queue_name(exchange, name),
        durable=True,
        routing_key="#",
        arguments={"x-single-active-consumer": True},
    )


def subscribe(broker: RabbitBroker, exchange: str, group: ProjectionGroup) -> None:
    """Register the consumer of `group`'s queue on `broker` (before `broker.start()`)."""

    # The message is read from the broker's context, not taken as a `message: RabbitMessage`
    # parameter: FastStream resolves such a parameter by calling a plain function in a worker
    # thread, once per message (a thread hop per batch, docs/BENCHMARKS.md).
    async def on_batch(body: bytes) -> None:
        events = decode_batch(body)
        if not events:
            return
        message: RabbitMessage = broker.context.get_local("message")
        header = message.headers.get(PREVIOUS_CHECKPOINT_HEADER)
        previous = Checkpoint.parse(str(header)) if header else None
        with ExitStack() as spans:  # each event's trace shows every projection it went to
            for runner in group.runners:
                spans.enter_context(
                    event_spans(f"project {runner.name}", events, SpanKind.CONSUMER)
                )
            await group.deliver(events, previous)

    broker.subscriber(
        projection_queue(exchange, group.name),
        events_exchange(exchange),
        # aio-pika runs each delivery in a task of its own: without a prefetch limit every
        # queued batch would be applied at once, all racing for the checkpoint locks (and a
        # later batch that wins sees a gap and catches up from the store). A few are buffered
        # here; `ProjectionGroup.deliver` takes them one at a time, in delivery order.
        channel=Channel(prefetch_count=PREFETCH),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=f"projection.{group.name}",
    )(on_batch)


async def delete_queues(broker: RabbitBroker, names: list[str]) -> None:
    """Delete queues nobody consumes any more, with what they hold (RabbitMQ answers a delete
    of a queue that does not exist with delete-ok)."""
    connection = await broker.connect()
    async with connection.channel() as channel:
        for name in names:
            await channel.queue_delete(name)


async def consumer_health(
    broker: RabbitBroker, runners: list[ProjectionRunner]
) -> tuple[bool, dict[str, Any]]:
    """Ready when the broker answers and the projections run; their checkpoints as detail."""
    broker_up = await broker.ping(timeout=1.0)
    checkpoints = {runner.key: str(await runner.checkpoint()) for runner in runners}
    detail = {"broker": "up" if broker_up else "down", "checkpoints": checkpoints}
    return broker_up and bool(runners), detail
