"""The few pieces of Grafana's dashboard JSON model cloudnet's dashboards use, laid out on the
24-column grid from left to right. Model: https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: The datasource provisioned in provisioning/datasources/prometheus.yml; every panel uses it.
DATASOURCE = {"type": "prometheus", "uid": "cloudnet-prometheus"}
#: Tag of dashboards whose metrics exist only in the compose mesh (cAdvisor).
COMPOSE_ONLY = "compose-only"
SCHEMA_VERSION = 39
GRID_COLUMNS = 24
#: The rate window Grafana derives from the scrape interval (at least four scrapes).
RATE = "$__rate_interval"


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True, slots=True)
class Panel:
    """A time series or stat panel over one or more PromQL queries."""

    title: str
    description: str
    queries: tuple[Query, ...]
    kind: Literal["timeseries", "stat"] = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    #: (value, color) steps above a green base, e.g. ((1, "red"),).
    thresholds: tuple[tuple[float, str], ...] = ()
    #: Value → (text, color), e.g. a breaker's 0/1/2 → closed/half-open/open.
    mappings: dict[int, tuple[str, str]] = field(default_factory=dict)
    stacked: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    title: str


@dataclass(frozen=True, slots=True)
class Variable:
    """A multi-value template variable over the values of one label ("All" matches any)."""

    name: str
    label: str
    metric: str
    label_name: str


def total(expr: str, *labels: str) -> str:
    """`sum by (labels) (expr)`, or `sum(expr)` when no label is kept."""
    return f"sum by ({', '.join(labels)}) ({expr})" if labels else f"sum({expr})"


def rate(counter: str, *labels: str, selector: str = "") -> str:
    """A counter's per-second rate over Grafana's rate interval, summed by `labels`."""
    selected = f"{counter}{{{selector}}}" if selector else counter
    return total(f"rate({selected}[{RATE}])", *labels)


def quantile(q: float, histogram: str, *labels: str, selector: str = "") -> str:
    """The `q` quantile of a Prometheus histogram, by `labels`."""
    buckets = rate(f"{histogram}_bucket", *labels, "le", selector=selector)
    return f"histogram_quantile({q}, {buckets})"


def timeseries(title: str, description: str, *queries: Query, **options: Any) -> Panel:
    return Panel(title, description, queries, "timeseries", **options)


def stat(title: str, description: str, *queries: Query, **options: Any) -> Panel:
    return Panel(title, description, queries, "stat", width=4, height=4, **options)


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    tags: tuple[str, ...],
    items: list[Panel | Row],
    variables: tuple[Variable, ...] = (),
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["cloudnet", *tags],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "links": [{"title": "cloudnet", "type": "dashboards", "tags": ["cloudnet"]}],
        "annotations": {"list": [_ANNOTATIONS]},
        "templating": {"list": [_variable(v) for v in variables]},
        "panels": _laid_out(items),
    }


_ANNOTATIONS = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def _laid_out(items: list[Panel | Row]) -> list[dict[str, Any]]:
    panels, x, y, line_height = [], 0, 0, 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y, x, line_height = y + line_height, 0, 1
            panels.append(_row(panel_id, item, y))
            continue
        if x + item.width > GRID_COLUMNS:
            y, x, line_height = y + line_height, 0, 0
        grid = {"h": item.height, "w": item.width, "x": x, "y": y}
        panels.append(_panel(panel_id, item, grid))
        x, line_height = x + item.width, max(line_height, item.height)
    return panels


def _row(panel_id: int, row: Row, y: int) -> dict[str, Any]:
    grid = {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y}
    return {"id": panel_id, "type": "row", "title": row.title, "collapsed": False, "gridPos": grid}


def _panel(panel_id: int, panel: Panel, grid: dict[str, int]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "mappings": _mappings(panel.mappings),
    }
    if panel.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": query.expr,
                "legendFormat": query.legend or "__auto",
                "range": True,
            }
            for index, query in enumerate(panel.queries)
        ],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": _STAT_OPTIONS if panel.kind == "stat" else _TIMESERIES_OPTIONS,
    }


def _mappings(mappings: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    if not mappings:
        return []
    options = {
        str(value): {"text": text, "color": color, "index": index}
        for index, (value, (text, color)) in enumerate(sorted(mappings.items()))
    }
    return [{"type": "value", "options": options}]


_TIMESERIES_OPTIONS = {
    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
    "tooltip": {"mode": "multi", "sort": "desc"},
}
_STAT_OPTIONS = {
    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
    "colorMode": "background",
    "graphMode": "area",
    "justifyMode": "auto",
    "orientation": "auto",
    "textMode": "auto",
}


def _variable(variable: Variable) -> dict[str, Any]:
    query = f"label_values({variable.metric}, {variable.label_name})"
    return {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }
