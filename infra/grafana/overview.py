"""Mesh overview: traffic, errors and latency per service (RED), upstream health, breakers."""

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
    total,
)

#: The services' own requests, without Prometheus' scrapes of /metrics.
HTTP = 'service=~"$service", route!="/metrics"'
UPSTREAMS = 'job=~"command_api|query_api"'
BREAKER_STATES = {0: ("closed", "green"), 1: ("half-open", "yellow"), 2: ("open", "red")}


def _requests(*labels: str, status: str = "") -> str:
    selector = f'{HTTP}, status=~"{status}"' if status else HTTP
    return rate("cloudnet_http_requests_total", *labels, selector=selector)


def _ratio(status: str, *labels: str) -> str:
    """Share of requests answered with `status` (a regex); 0, not "no data", when none were."""
    every = _requests(*labels)
    return f"({_requests(*labels, status=status)} or {every} * 0) / {every}"


def _latency(q: float, *labels: str) -> str:
    return quantile(q, "cloudnet_http_request_duration_seconds", *labels, selector=HTTP)


def overview() -> dict[str, Any]:
    return dashboard(
        uid="cloudnet-overview",
        title="cloudnet / Mesh overview",
        description="Requests, errors and latency of every cloudnet service, upstreams, breakers.",
        tags=("overview",),
        variables=(Variable("service", "Service", "cloudnet_http_requests_total", "service"),),
        items=[
            Row("Now"),
            stat(
                "Requests/s",
                "Requests the selected services answered (scrapes of /metrics excluded).",
                Query(_requests()),
                unit="reqps",
            ),
            stat(
                "5xx ratio",
                "Share of answers that were server errors.",
                Query(_ratio("5..")),
                unit="percentunit",
                thresholds=((0.01, "orange"), (0.05, "red")),
            ),
            stat(
                "p99 latency",
                "99th percentile of the time to the last response byte, all routes.",
                Query(_latency(0.99)),
                unit="s",
                thresholds=((0.5, "orange"), (1, "red")),
            ),
            stat(
                "Targets down",
                "Scrape targets Prometheus cannot reach (any job).",
                Query("count(up == 0) or on() vector(0)"),
                thresholds=((1, "red"),),
            ),
            stat(
                "Open breakers",
                "Circuit breakers open right now; callers fail fast with 503 while one is.",
                Query("count(cloudnet_circuit_breaker_state == 2) or on() vector(0)"),
                thresholds=((1, "red"),),
            ),
            stat(
                "Alerts firing",
                "Prometheus alerts firing (rules in infra/prometheus/rules/).",
                Query('count(ALERTS{alertstate="firing"}) or on() vector(0)'),
                thresholds=((1, "red"),),
            ),
            Row("Traffic and errors"),
            timeseries(
                "Requests/s by service",
                "Answered requests per service.",
                Query(_requests("service"), "{{service}}"),
                unit="reqps",
            ),
            timeseries(
                "Answers by status class",
                "Answers per service and status class (2xx, 4xx, 5xx).",
                Query(
                    total(
                        f"label_replace(rate(cloudnet_http_requests_total{{{HTTP}}}[{RATE}]), "
                        '"class", "${1}xx", "status", "(.)..")',
                        "service",
                        "class",
                    ),
                    "{{service}} {{class}}",
                ),
                unit="reqps",
                stacked=True,
            ),
            timeseries(
                "5xx ratio by service",
                "Share of each service's answers that were server errors (alert: above 5%).",
                Query(_ratio("5..", "service"), "{{service}}"),
                unit="percentunit",
                thresholds=((0.05, "red"),),
            ),
            timeseries(
                "4xx by route",
                "Client errors per route and status: validation (422), conflicts (409), "
                "auth (401/403), missing (404), rate limit (429).",
                Query(
                    _requests("service", "route", "status", status="4.."),
                    "{{service}} {{route}} {{status}}",
                ),
                unit="reqps",
            ),
            Row("Latency"),
            timeseries(
                "Latency by service",
                "p50, p95 and p99 of the time to the last response byte.",
                *(
                    Query(_latency(q, "service"), f"{{{{service}}}} p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ),
                unit="s",
            ),
            timeseries(
                "p99 latency by route",
                "Slowest routes. Reads with X-Min-Position wait up to 5 s for the read model.",
                Query(_latency(0.99, "service", "route"), "{{service}} {{route}}"),
                unit="s",
            ),
            Row("Upstreams and breakers"),
            timeseries(
                "Upstream instances up",
                "Instances of each gateway upstream Prometheus can scrape, and the gateway.",
                Query(f"sum by (job) (up{{{UPSTREAMS}}})", "{{job}}"),
                Query("sum(nginx_up)", "gateway (nginx)"),
            ),
            timeseries(
                "Scrape health by instance",
                "1 while Prometheus reaches the instance, 0 when it is down.",
                Query(f"max by (job, instance) (up{{{UPSTREAMS}}})", "{{instance}}"),
                mappings={0: ("down", "red"), 1: ("up", "green")},
            ),
            timeseries(
                "Circuit breaker state",
                "Per caller and dependency: 0 closed, 1 half-open, 2 open (callers fail fast).",
                Query(
                    "max by (instance, dependency) (cloudnet_circuit_breaker_state) "
                    "or on() vector(0)",
                    "{{instance}} → {{dependency}}",
                ),
                mappings=BREAKER_STATES,
                thresholds=((1, "orange"), (2, "red")),
            ),
            timeseries(
                "503 answers (dependency down, breaker open)",
                "Answers that told the client to retry later.",
                Query(f"{_requests('service', status='503')} or on() vector(0)", "{{service}}"),
                unit="reqps",
            ),
        ],
    )
