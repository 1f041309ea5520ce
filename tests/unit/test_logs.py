"""Log lines are JSON with service, request id, tenant and trace id."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from infra.logs import REQUEST_ID, TENANT, configure_logging


def test_a_log_line_carries_request_tenant_and_trace() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        _check_one_line()
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def _check_one_line() -> None:
    configure_logging("command_api", "command-1")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)  # type: ignore[attr-defined]
    REQUEST_ID.set("req-1")
    TENANT.set("acme")
    with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
        logging.getLogger("cloudnet.test").info("command committed", extra={"position": 7})
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["message"] == "command committed"
    assert (line["service"], line["instance"]) == ("command_api", "command-1")
    assert (line["request_id"], line["tenant"], line["position"]) == ("req-1", "acme", 7)
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
