"""Every dashboard query against the mesh's real Prometheus after real traffic through the
gateway: each one must evaluate without error and return data, as a Grafana panel would show it.
Also the alert rules: loaded, and evaluating cleanly against the live series."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.unit.test_dashboards import all_dashboards, expand, is_compose_only, panels

pytestmark = pytest.mark.e2e

#: Scrapes every 5 s: a minute covers the slowest series (a provisioner boot, a relay batch).
DEADLINE_SECONDS = 90
POLL_SECONDS = 1.0


def drive_traffic(gateway_url: str, token: str) -> None:
    """Writes through every aggregate, reads of every kind, client errors, an idempotent replay."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=30) as client:

        def post(path: str, body: dict[str, Any], expected: int = 201, **extra: str) -> Any:
            response = client.post(path, json=body, headers=extra)
            assert response.status_code == expected, response.text
            return response

        network = post("/v1/networks", {"name": "dash", "cidr": "10.42.0.0/16"}).json()
        subnet = post(
            f"/v1/networks/{network['id']}/subnets", {"name": "a", "cidr": "10.42.1.0/24"}
        ).json()
        launch = {"name": "vm", "subnet_id": subnet["id"], "size": "small"}
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = post("/v1/instances", launch, **key)
        replayed = post("/v1/instances", launch, **key)
        assert replayed.json() == first.json()
        instance = post("/v1/instances", {**launch, "size": "large"}).json()
        fresh = {"X-Min-Position": str(instance["position"])}
        for path in (
            f"/v1/networks/{network['id']}",
            f"/v1/subnets/{subnet['id']}",
            f"/v1/instances/{instance['id']}",
            "/v1/networks",
            "/v1/instances?limit=10",
            "/v1/activity",
        ):
            response = client.get(path, headers=fresh)
            assert response.status_code == 200, f"{path}: {response.text}"
        # Client errors: rule violation, missing resource, validation, no token.
        post("/v1/networks", {"name": "x", "cidr": "8.8.8.0/24"}, expected=422)
        assert client.get(f"/v1/networks/{uuid.uuid4()}").status_code == 404
        assert httpx.get(f"{gateway_url}/v1/networks", timeout=30).status_code == 401


class Prometheus:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def query(self, expr: str) -> list[Any]:
        """The instant vector (or scalar) `expr` evaluates to; fails on a query error."""
        response = self.client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body.get("status") == "success", f"{expr}\n→ {body.get('error', response.text)}"
        result = body["data"]["result"]
        return [result] if body["data"]["resultType"] == "scalar" else list(result)

    def wait_for(self, expr: str) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not self.query(expr):
            assert time.monotonic() < deadline, f"Prometheus never returned data for {expr}"
            time.sleep(POLL_SECONDS)


@pytest.fixture(scope="module")
def prometheus(mesh: Any) -> Prometheus:
    drive_traffic(mesh.gateway_url, mesh.token("dashboards", "cloud:read cloud:write"))
    prometheus = Prometheus(mesh.prometheus_url)
    # Two scrapes of the requests just made (rate() needs two samples in its window).
    prometheus.wait_for(
        "count_over_time("
        'cloudnet_http_requests_total{service="command_api", status="201"}[1m]) >= 2'
    )
    return prometheus


def panel_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every query of every panel the local mesh can serve."""
    return [
        (
            f"{dashboard['title']} / {panel['title']} [{target['refId']}]",
            expand(target["expr"], dashboard),
        )
        for dashboard in all_dashboards()
        if not is_compose_only(dashboard)
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def test_every_panel_query_returns_data(prometheus: Prometheus) -> None:
    pending = dict(panel_queries())
    assert len(pending) > 50
    deadline = time.monotonic() + DEADLINE_SECONDS
    # Series appear as their processes are scraped after the traffic: poll until every query
    # has data, or report the ones that never did.
    while True:
        pending = {where: expr for where, expr in pending.items() if not prometheus.query(expr)}
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)

    assert not pending, "panels without data:\n" + "\n".join(
        f"{where}: {expr}" for where, expr in pending.items()
    )


def test_every_template_variable_has_values(prometheus: Prometheus) -> None:
    for dashboard in all_dashboards():
        if is_compose_only(dashboard):
            continue
        for variable in dashboard["templating"]["list"]:
            metric, label = variable["definition"].removeprefix("label_values(")[:-1].split(", ")
            response = prometheus.client.get(
                f"/api/v1/label/{label}/values", params={"match[]": metric}
            )
            assert response.json()["data"], f"{dashboard['title']}: ${variable['name']} is empty"


def test_the_alert_rules_are_loaded_and_evaluate_cleanly(prometheus: Prometheus) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = prometheus.client.get("/api/v1/rules").json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    prometheus.wait_for("prometheus_rule_group_last_evaluation_timestamp_seconds > 0")
    deadline = time.monotonic() + DEADLINE_SECONDS
    while any(rule["health"] == "unknown" for rule in rules()):
        assert time.monotonic() < deadline, "rules never evaluated"
        time.sleep(POLL_SECONDS)

    loaded = rules()
    assert {"CloudnetTargetDown", "CloudnetRelayStalled", "CloudnetProjectionLagging"} <= {
        rule["name"] for rule in loaded
    }
    broken = {rule["name"]: rule.get("lastError") for rule in loaded if rule["health"] != "ok"}
    assert not broken
    # A healthy mesh after ordinary traffic: nothing of ours fires.
    firing = prometheus.query('ALERTS{alertstate="firing", alertname=~"Cloudnet.*"}')
    assert not firing, [alert["metric"] for alert in firing]
