"""The RabbitMQ broker every worker uses: FastStream, JSON logs, and FastStream's own
Prometheus middleware (messages received/published, processing time, errors) on the default
registry each service's /metrics serves.
See https://faststream.ag2.ai/latest/getting-started/observability/prometheus/
"""

from __future__ import annotations

import logging

from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import REGISTRY

from infra.settings import Settings


def rabbit_broker(settings: Settings, app_name: str) -> RabbitBroker:
    # FastStream gives its logger a plain-text stderr handler of its own when imported: its
    # records go to the root's JSON handler instead. Its per-message "Received"/"Processed"
    # lines (two per batch, most of a busy projector's log) are DEBUG; failures stay ERROR.
    logger = logging.getLogger("faststream")
    logger.handlers.clear()
    logger.propagate = True
    return RabbitBroker(
        settings.amqp_url,
        logger=logger,
        log_level=logging.DEBUG,
        # No FastDepends: the one subscriber (projectors.consumer) takes the body as the bytes it
        # came as, which FastDepends only checked against `bytes`, per message.
        apply_types=False,
        middlewares=[RabbitPrometheusMiddleware(registry=REGISTRY, app_name=app_name)],
    )
