"""The Grafana dashboards and provisioning in infra/grafana/: well-formed, on the provisioned
datasource, free of hard-coded instances, valid PromQL, and in step with their generator."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.grafana.catalog import BUILDERS, DASHBOARDS_DIR, GRAFANA_DIR, rendered
from infra.grafana.model import COMPOSE_ONLY

PROVISIONING = GRAFANA_DIR / "provisioning"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
#: What Grafana puts in for its built-in variables when a test runs the queries itself.
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")
_INSTANCE_VALUE = re.compile(r'\binstance\s*(=~|!~|!=|=)\s*"(?!\$)')


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def all_dashboards() -> list[dict[str, Any]]:
    return [load(path) for path in DASHBOARD_FILES]


def is_compose_only(dashboard: dict[str, Any]) -> bool:
    return COMPOSE_ONLY in dashboard["tags"]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel with queries (rows only group them), nested ones included."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def expand(expr: str, dashboard: dict[str, Any]) -> str:
    """`expr` as Grafana sends it with every template variable at "All" and the built-ins at
    BUILTINS; anything else that looks like a variable (label_replace's `${1}`) stays."""
    values = dict(BUILTINS)
    values.update({v["name"]: v["allValue"] for v in dashboard["templating"]["list"]})

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(value, expr)


def provisioned_datasource() -> dict[str, Any]:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (datasource,) = config["datasources"]
    return dict(datasource)


@pytest.fixture(params=DASHBOARD_FILES, ids=lambda path: path.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    committed = {path.name: path.read_text() for path in DASHBOARD_FILES}

    # Regenerate with `python -m infra.grafana`.
    assert committed == rendered()


def test_dashboards_have_unique_uids_and_titles() -> None:
    dashboards = all_dashboards()

    assert len(dashboards) == len(BUILDERS) >= 4
    for key in ("uid", "title"):
        counts = Counter(d[key] for d in dashboards)
        assert all(n == 1 for n in counts.values()), counts


def test_panel_ids_are_unique_and_panels_fit_the_grid(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    ids += [nested["id"] for panel in dashboard["panels"] for nested in panel.get("panels", [])]

    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41


def test_every_panel_queries_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    datasource = provisioned_datasource()
    expected = {"type": datasource["type"], "uid": datasource["uid"]}

    for panel in panels(dashboard):
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], f"{panel['title']} has no queries"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", expected) == expected, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == expected, variable["name"]


def test_no_query_names_an_instance_or_address(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            assert not _INSTANCE_VALUE.search(expr), f"{panel['title']}: {expr}"
            assert not re.search(r"\d+\.\d+\.\d+\.\d+|localhost|:\d{2,5}\b", expr), expr


def test_queries_use_only_defined_variables(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            left = expand(target["expr"], dashboard)
            unknown = {m.group(0) for m in _VARIABLE.finditer(left)} - {"${1}", "$1"}
            assert not unknown, f"{panel['title']}: undefined {unknown}"


def test_compose_only_dashboards_hold_exactly_the_cadvisor_panels() -> None:
    # The e2e test skips compose-only dashboards; this keeps the tag from hiding other panels.
    for dashboard in all_dashboards():
        for panel in panels(dashboard):
            cadvisor = all("container_" in t["expr"] for t in panel["targets"])
            assert cadvisor == is_compose_only(dashboard), panel["title"]
            if cadvisor:
                assert COMPOSE_ONLY in panel["description"], panel["title"]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses a recording rule per query: a syntax error fails without any Prometheus.
    rules = [
        {
            "record": f"panel:{dashboard['uid'].replace('-', '_')}:{panel['id']}{target['refId']}",
            "expr": expand(target["expr"], dashboard),
        }
        for dashboard in all_dashboards()
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))

    result = subprocess.run(
        ["/usr/bin/promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    datasource = provisioned_datasource()
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "cloudnet.yml").read_text())

    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == "cloudnet-prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
