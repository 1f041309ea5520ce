"""Feeds each projection from its own durable RabbitMQ queue (FastStream).

One queue per read model, bound to the events exchange, with single active consumer:
several projector processes may run, exactly one applies a projection at a time and the
others take over when it dies. A message is acked only after its transaction commits.
See https://faststream.ag2.ai/latest/rabbit/ack/
"""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.rabbit import RabbitBroker, RabbitMessage, RabbitQueue
from opentelemetry.trace import SpanKind

from events.cloudevents import PREVIOUS_CHECKPOINT_HEADER, decode_batch
from events.model import Checkpoint
from events.relay.publisher import events_exchange
from infra.telemetry import event_spans
from projectors.runtime import Outcome, ProjectionRunner


def projection_queue(exchange: str, name: str) -> RabbitQueue:
    """One queue per read model (not per version: a replay's swap keeps the queue)."""
    return RabbitQueue(
        f"{exchange}.{name}",
        durable=True,
        routing_key="#",
        arguments={"x-single-active-consumer": True},
    )


def subscribe(broker: RabbitBroker, exchange: str, runner: ProjectionRunner) -> None:
    """Register the consumer of `runner`'s queue on `broker` (before `broker.start()`)."""

    async def on_batch(body: bytes, message: RabbitMessage) -> None:
        events = decode_batch(body)
        if not events:
            return
        header = message.headers.get(PREVIOUS_CHECKPOINT_HEADER)
        previous = Checkpoint.parse(str(header)) if header else None
        with event_spans(f"project {runner.name}", events, SpanKind.CONSUMER):
            if await runner.apply(events, previous) is Outcome.GAP:
                await runner.catch_up(until=events[-1].checkpoint)

    broker.subscriber(
        projection_queue(exchange, runner.name),
        events_exchange(exchange),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=f"projection.{runner.name}",
    )(on_batch)


async def consumer_health(
    broker: RabbitBroker, runners: list[ProjectionRunner]
) -> tuple[bool, dict[str, Any]]:
    """Ready when the broker answers and the projections run; their checkpoints as detail."""
    broker_up = await broker.ping(timeout=1.0)
    checkpoints = {runner.key: str(await runner.checkpoint()) for runner in runners}
    detail = {"broker": "up" if broker_up else "down", "checkpoints": checkpoints}
    return broker_up and bool(runners), detail
