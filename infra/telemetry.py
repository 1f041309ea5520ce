"""OpenTelemetry tracing: one trace from the command request through the stored event, the
relay's publish, the projectors and the provisioner's call back into the command service.

Events carry their trace context in metadata (`traceparent`), so every later process continues
the trace from the store rather than from a broker header it might not have.
See https://opentelemetry-python.readthedocs.io/en/stable/sdk/trace.html
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

if TYPE_CHECKING:
    from events import RecordedEvent

tracer = trace.get_tracer("cloudnet")


def configure_tracing(service: str, exporter: str, otlp_endpoint: str) -> None:
    """Install the process's tracer provider; `none` leaves tracing off (no-op spans)."""
    if exporter == "none":
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    else:
        raise ValueError(f"unknown tracing exporter {exporter!r}: none, console or otlp")
    trace.set_tracer_provider(provider)


def exporting() -> bool:
    """Whether this process has a tracer provider that records spans (`configure_tracing`, or a
    test's): without one, the API's spans record nothing."""
    return not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )


_NO_SPAN = nullcontext()


def span(
    name: str, parent: Context | None = None, **options: Any
) -> AbstractContextManager[object]:
    """`tracer.start_as_current_span(name, context=parent, ...)`, left out where it would change
    nothing: in a process that records no spans, a span without a parent of its own is an
    invalid one that neither records nor carries a trace on, and making it cost a command about
    15 % of its CPU in process (docs/BENCHMARKS.md, seventeenth session). A span with a parent is
    still made there: it carries the parent's trace on to what the process sends and stores."""
    if parent is None and not exporting():
        return _NO_SPAN
    return tracer.start_as_current_span(name, context=parent, **options)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the active span, to store with events or send on."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None  # nothing to send on: not worth the propagators' round (most commands)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_of(traceparent: str | None) -> Context | None:
    return propagate.extract({"traceparent": traceparent}) if traceparent else None


@contextmanager
def event_spans(name: str, events: Sequence[RecordedEvent], kind: trace.SpanKind) -> Iterator[None]:
    """One span per event, each a child of the context the event was stored with (none where this
    process records no spans: nothing reads the context inside)."""
    if not exporting():
        yield
        return
    with ExitStack() as stack:
        for event in events:
            parent = context_of(event.metadata.get("traceparent"))
            if parent is None:
                continue
            stack.enter_context(
                tracer.start_as_current_span(
                    f"{name} {event.type}",
                    context=parent,
                    kind=kind,
                    attributes={
                        "cloudnet.position": event.position,
                        "cloudnet.stream_id": event.stream_id,
                    },
                )
            )
        yield
