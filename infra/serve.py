"""Runs an ASGI app under uvicorn (uvloop + httptools), the way every cloudnet service does."""

from __future__ import annotations

from typing import Any

import uvicorn

from infra.logs import configure_logging
from infra.settings import Settings
from infra.telemetry import configure_tracing


def serve(app: Any, settings: Settings, service: str) -> None:
    configure_logging(service, settings.instance, settings.log_level)
    configure_tracing(service, settings.tracing, settings.otlp_endpoint)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,  # the gateway writes the access log
        # nginx drops an upstream's Date and Server headers: not worth writing on every answer.
        server_header=False,
        date_header=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
