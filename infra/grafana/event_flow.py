"""Event flow: appends, the relay's distance to the store's head, the broker, each projection's
lag and dead letters, the provisioner."""

from __future__ import annotations

from typing import Any

from infra.grafana.model import (
    RATE,
    Query,
    Row,
    Variable,
    dashboard,
    quantile,
    rate,
    stat,
    timeseries,
)

PROJECTION = 'projection=~"$projection"'
#: Where writers last saw the store's head (command_api/metrics.py); readers are measured to it.
HEAD_POSITION = "max(cloudnet_events_head_position)"
HEAD_TIME = "max(cloudnet_events_head_timestamp_seconds)"
#: The leading relay's place (a relay that has not published since it started reports 0).
RELAY_POSITION = "max(cloudnet_relay_checkpoint_position > 0)"
RELAY_TIME = "max(cloudnet_relay_checkpoint_timestamp_seconds > 0)"
RELAY_BACKLOG = f"clamp_min({HEAD_POSITION} - {RELAY_POSITION}, 0)"
RELAY_BEHIND = f"clamp_min({HEAD_TIME} - {RELAY_TIME}, 0)"


def event_flow() -> dict[str, Any]:
    return dashboard(
        uid="cloudnet-event-flow",
        title="cloudnet / Event flow",
        description="From append to read model: store head, relay, broker, projections.",
        tags=("events",),
        variables=(
            Variable(
                "projection", "Projection", "cloudnet_projection_checkpoint_position", "projection"
            ),
        ),
        items=[
            Row("Now"),
            stat(
                "Events appended/s",
                "Events commands committed to the store.",
                Query(rate("cloudnet_events_appended_total")),
                unit="ops",
            ),
            stat(
                "Relay backlog",
                "Events committed but not yet published (head position minus the relay's).",
                Query(f"{RELAY_BACKLOG} or on() vector(0)"),
                thresholds=((100, "orange"), (1000, "red")),
            ),
            stat(
                "Relay behind head",
                "How much older the last published event is than the last committed one.",
                Query(f"{RELAY_BEHIND} or on() vector(0)"),
                unit="s",
                thresholds=((5, "orange"), (60, "red")),
            ),
            stat(
                "Relay leaders",
                "Relays holding the leader lock: exactly one should.",
                Query("sum(cloudnet_relay_leader)"),
                thresholds=((0, "red"), (1, "green"), (2, "red")),
            ),
            stat(
                "Halted projections",
                "Projections stopped at a dead-lettered event (`cloudnet dlq` to inspect).",
                Query(
                    "count(max by (projection) (cloudnet_projection_halted) == 1) or on() vector(0)"
                ),
                thresholds=((1, "red"),),
            ),
            stat(
                "Dead letters",
                "Events dead-lettered in the selected time range.",
                Query(
                    "sum(increase(cloudnet_projection_dead_letters_total[$__range])) "
                    "or on() vector(0)"
                ),
                thresholds=((1, "red"),),
            ),
            Row("Writes and relay"),
            timeseries(
                "Events appended/s by type",
                "Events committed by commands, by event type.",
                Query(rate("cloudnet_events_appended_total", "type"), "{{type}}"),
                unit="ops",
                stacked=True,
            ),
            timeseries(
                "Appended vs published",
                "What commands commit and what the relay publishes should move together.",
                Query(rate("cloudnet_events_appended_total"), "appended"),
                Query(rate("cloudnet_relay_published_events_total"), "published"),
                unit="ops",
            ),
            timeseries(
                "Relay backlog",
                "Events committed but not published yet, and how far behind in time the relay is.",
                Query(RELAY_BACKLOG, "events"),
                Query(RELAY_BEHIND, "seconds behind"),
            ),
            timeseries(
                "Publish latency",
                "Time from publishing a batch until the broker confirmed it.",
                *(
                    Query(quantile(q, "cloudnet_relay_publish_seconds"), f"p{round(q * 100)}")
                    for q in (0.5, 0.99)
                ),
                unit="s",
            ),
            timeseries(
                "Events per batch",
                "Events one broker message carries on average (DESIGN §1: batches).",
                Query(
                    f"{rate('cloudnet_relay_published_events_total')} / "
                    f"{rate('cloudnet_relay_published_batches_total')}",
                    "events per batch",
                ),
            ),
            timeseries(
                "Command conflicts, replays and relay failures",
                "Concurrency conflicts commands retried, answers replayed for an "
                "Idempotency-Key, relay passes that failed.",
                Query(rate("cloudnet_command_conflicts_total"), "conflicts"),
                Query(rate("cloudnet_command_idempotent_replays_total"), "idempotent replays"),
                Query(rate("cloudnet_relay_failures_total"), "relay failures"),
                unit="ops",
            ),
            Row("Broker"),
            timeseries(
                "Queue depth",
                "Messages waiting in RabbitMQ (all queues) and delivered but not acked yet.",
                Query("sum(rabbitmq_queue_messages_ready)", "ready"),
                Query("sum(rabbitmq_queue_messages_unacked)", "unacked"),
            ),
            timeseries(
                "Broker messages/s",
                "Messages RabbitMQ received from the relay, confirmed, and delivered to consumers.",
                Query(rate("rabbitmq_global_messages_received_total"), "received"),
                Query(rate("rabbitmq_global_messages_confirmed_total"), "confirmed"),
                Query(rate("rabbitmq_global_messages_delivered_total"), "delivered"),
                unit="ops",
            ),
            Row("Projections"),
            timeseries(
                "Projection lag",
                "Age of the last applied event when it was applied, per read-model version; "
                "p99: of each batch's oldest event, over the rate interval.",
                Query(
                    f"max by (projection) (cloudnet_projection_lag_seconds{{{PROJECTION}}})",
                    "{{projection}}",
                ),
                Query(
                    quantile(
                        0.99,
                        "cloudnet_projection_apply_lag_seconds",
                        "projection",
                        selector=PROJECTION,
                    ),
                    "p99 {{projection}}",
                ),
                unit="s",
                thresholds=((30, "red"),),
            ),
            timeseries(
                "Projection backlog",
                "Events between the store's head and what each read model has applied.",
                Query(
                    f"clamp_min(scalar({HEAD_POSITION}) - max by (projection) "
                    f"(cloudnet_projection_checkpoint_position{{{PROJECTION}}}), 0)",
                    "{{projection}}",
                ),
            ),
            timeseries(
                "Events applied/s",
                "Events each read model applied, and redeliveries it skipped as duplicates.",
                Query(
                    rate(
                        "cloudnet_projection_events_applied_total",
                        "projection",
                        selector=PROJECTION,
                    ),
                    "{{projection}} applied",
                ),
                Query(
                    rate(
                        "cloudnet_projection_events_skipped_total",
                        "projection",
                        selector=PROJECTION,
                    ),
                    "{{projection}} skipped",
                ),
                unit="ops",
            ),
            timeseries(
                "Dead letters and halts",
                "Poison events dead-lettered, and 1 while a projection is halted at one.",
                Query(
                    "sum by (projection) (increase(cloudnet_projection_dead_letters_total"
                    f"{{{PROJECTION}}}[{RATE}])) or on() vector(0)",
                    "{{projection}} dead letters",
                ),
                Query(
                    f"max by (projection) (cloudnet_projection_halted{{{PROJECTION}}})",
                    "{{projection}} halted",
                ),
                thresholds=((1, "red"),),
            ),
            Row("Provisioner"),
            timeseries(
                "Pending boots",
                "Launched instances the provisioner has not marked running yet.",
                Query("sum(cloudnet_provisioner_pending_boots)", "pending"),
            ),
            timeseries(
                "Boots/s by outcome",
                "booted; refused (e.g. terminated meanwhile); retry (command service or breaker).",
                Query(
                    f"{rate('cloudnet_provisioner_boots_total', 'outcome')} or on() vector(0)",
                    "{{outcome}}",
                ),
                unit="ops",
            ),
        ],
    )
