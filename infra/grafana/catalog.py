"""Every dashboard cloudnet provisions, by file name, rendered as the JSON that is committed in
infra/grafana/dashboards/ (a unit test keeps the two equal)."""

from __future__ import annotations

import json
from pathlib import Path

from infra.grafana.containers import containers
from infra.grafana.event_flow import event_flow
from infra.grafana.infrastructure import infrastructure
from infra.grafana.overview import overview

GRAFANA_DIR = Path(__file__).resolve().parent
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
BUILDERS = {
    "overview.json": overview,
    "event-flow.json": event_flow,
    "infrastructure.json": infrastructure,
    "containers.json": containers,
}


def rendered() -> dict[str, str]:
    """File name → dashboard JSON, formatted as committed."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in BUILDERS.items()}
