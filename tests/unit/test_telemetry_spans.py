"""`infra.telemetry.span` leaves out only the spans that would change nothing: those without a
parent of their own, in a process that records no spans."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from infra import telemetry

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (trace.ProxyTracerProvider(), False),  # nothing configured
        (trace.NoOpTracerProvider(), False),
        (TracerProvider(), True),  # configure_tracing's, or a test's
    ],
)
def test_exporting_means_a_provider_that_records(
    monkeypatch: pytest.MonkeyPatch, provider: trace.TracerProvider, expected: bool
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    assert telemetry.exporting() is expected


def test_without_a_provider_a_span_without_parent_is_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry, "exporting", lambda: False)
    first, second = telemetry.span("append"), telemetry.span("append", kind=trace.SpanKind.CLIENT)
    assert first is second  # one shared do-nothing context, nothing made per call
    with first:
        assert telemetry.current_traceparent() is None


def test_without_a_provider_a_span_with_a_parent_still_carries_its_trace_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry, "exporting", lambda: False)
    with telemetry.span("mark running", telemetry.context_of(PARENT)):
        assert telemetry.current_traceparent() == PARENT
    assert telemetry.current_traceparent() is None


def test_with_a_provider_every_span_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []

    def start(name: str, **options: object) -> object:
        made.append(name)
        return nullcontext()

    monkeypatch.setattr(telemetry, "exporting", lambda: True)
    monkeypatch.setattr(telemetry.tracer, "start_as_current_span", start)
    with telemetry.span("append"), telemetry.span("boot", telemetry.context_of(PARENT)):
        pass
    assert made == ["append", "boot"]
