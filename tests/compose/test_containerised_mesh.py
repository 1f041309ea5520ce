"""The containerised mesh, for real: compose.yaml with locally built images under podman
(issue: "The containerised mesh runs for real"). Every test talks to the running containers
through the gateway container's published port, and breaks them with podman itself.

The tests run in file order on one mesh; each leaves it whole (every fault is undone and the
mesh answers again before the test ends)."""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.compose.gateway import RATE_LIMIT
from infra.compose.podman import ComposeMesh, podman, podman_environment

#: How long a read model may take to show a write once its path is whole again.
CATCH_UP_SECONDS = 60


# --- helpers


def create_network(gateway: httpx.Client, prefix: str = "net") -> dict[str, Any]:
    response = gateway.post(
        "/v1/networks", json={"name": f"{prefix}-{uuid.uuid4().hex[:8]}", "cidr": "10.20.0.0/16"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(what: str, ready: Callable[[], bool], seconds: float = CATCH_UP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.25)


def visible(gateway: httpx.Client, network_id: str) -> bool:
    """A plain GET (no X-Min-Position) finds the network: the read model has it."""
    return gateway.get(f"/v1/networks/{network_id}").status_code == 200


def all_visible(gateway: httpx.Client, network_ids: list[str]) -> bool:
    return all(visible(gateway, network_id) for network_id in network_ids)


def psql(compose: ComposeMesh, container: str, sql: str) -> str:
    result = compose.exec(container, "psql", "-U", "cloudnet", "-d", "cloudnet", "-Atc", sql)
    return result.stdout.strip()


def address_of(container: str) -> str:
    return podman(
        "inspect", container, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    ).strip()


def metric(compose: ComposeMesh, container: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples on one container's /metrics that carry `labels`."""
    fetch = (
        "import urllib.request;"
        "print(urllib.request.urlopen('http://127.0.0.1:8000/metrics', timeout=5).read().decode())"
    )
    text = compose.exec(container, "python", "-c", fetch).stdout
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def cloudnet_check(compose: ComposeMesh) -> None:
    """`cloudnet check` in a command container is clean. It exits 2 when it cannot reach the
    store: right after a network change podman's DNS has been seen to stall a new process's
    first lookup past the connect timeout, so that is retried; a difference (1) is not."""
    for _ in range(5):
        check = compose.exec(compose.container("command-api"), "cloudnet", "check", check=False)
        if check.returncode != 2:
            break
    assert check.returncode == 0, check.stdout + check.stderr


def reads_answered(compose: ComposeMesh, container: str) -> float:
    return metric(
        compose, container, "cloudnet_http_requests_total", service="query_api", method="GET"
    )


#: GETs a second from each `get_load` worker: 4 workers send 60 % of the gateway's limit.
WORKER_RATE = RATE_LIMIT * 0.6 / 4
#: The `get_load` counter of GETs sent again after the gateway closed their connection unanswered.
RETRIED = "retried on a new connection"


@contextmanager
def get_load(gateway_url: str, token: str, path: str, workers: int = 4) -> Iterator[Counter[str]]:
    """GETs of `path` from `workers` threads until the block ends, `WORKER_RATE` a second each;
    the outcomes by status (or by exception name for a transport error).

    The rate stays well under the gateway's limit per client (`RATE_LIMIT`): unpaced, a fast
    machine sent ~2,000 GETs/s and got 429s, which say nothing about a killed replica.

    A client keep-alive connection the gateway closed while a GET went out on it is retried
    once, on a new connection, as HTTP lets a client do for an idempotent request that got no
    answer (RFC 9110 §9.2.2, what browsers do): nginx closes its idle client connections when
    it reloads, and the gateway reloads when a replica gains an address (a killed one that
    podman restarted). Such retries are counted under `RETRIED` besides the outcome."""
    outcomes: Counter[str] = Counter()
    answers: list[str] = []  # the first few answers other than 200, printed
    lock = threading.Lock()
    stop = threading.Event()

    def get(client: httpx.Client) -> str:
        try:
            response = client.get(path)
        except httpx.RemoteProtocolError as error:
            if "without sending a response" not in str(error):
                raise
            with lock:
                outcomes[RETRIED] += 1
            response = client.get(path)
        if response.status_code != 200 and len(answers) < 5:
            # Who answered what: nginx's problem or the service's (its detail).
            answers.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return str(response.status_code)

    def run() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        due = time.monotonic()
        with httpx.Client(base_url=gateway_url, headers=headers, timeout=30) as client:
            while not stop.wait(max(0.0, due - time.monotonic())):
                due += 1 / WORKER_RATE
                try:
                    outcome = get(client)
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                with lock:
                    outcomes[outcome] += 1

    threads = [threading.Thread(target=run, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for answer in answers:
            print(f"\nnot 200: {answer}")


# --- the full flow


def test_a_write_through_the_gateway_is_read_back_from_the_postgresql_replica(
    compose: ComposeMesh, gateway: httpx.Client
) -> None:
    created = create_network(gateway, "flow")

    read = gateway.get(
        f"/v1/networks/{created['id']}", headers={"X-Min-Position": str(created["position"])}
    )

    assert read.status_code == 200, read.text
    assert read.json()["id"] == created["id"]
    replica = compose.container("postgres-replica")
    assert psql(compose, replica, "SELECT pg_is_in_recovery()") == "t"
    assert (
        psql(compose, replica, f"SELECT count(*) FROM rm_networks WHERE id = '{created['id']}'")
        == "1"
    )
    # The query containers hold connections to the replica, and none to the primary.
    query_addresses = {address_of(name) for name in compose.containers("query-api")}
    clients = (
        "SELECT DISTINCT host(client_addr) FROM pg_stat_activity WHERE client_addr IS NOT NULL"
    )
    on_replica = set(psql(compose, replica, clients).split())
    on_primary = set(psql(compose, compose.container("postgres"), clients).split())
    assert query_addresses
    assert query_addresses <= on_replica
    assert not query_addresses & on_primary
    streaming = "SELECT status FROM pg_stat_wal_receiver"
    assert psql(compose, replica, streaming) == "streaming"


# --- scale


def test_query_api_scaled_to_three_takes_requests_on_all_three(
    compose: ComposeMesh, gateway: httpx.Client
) -> None:
    compose.scale("query-api", 3)
    queries = compose.containers("query-api")
    assert len(queries) == 3
    wait_until("the third query replica is healthy", lambda: all(map(compose.healthy, queries)))
    before = {name: reads_answered(compose, name) for name in queries}

    def all_three_answered() -> bool:
        for _ in range(30):
            assert gateway.get("/v1/networks").status_code == 200
        return all(reads_answered(compose, name) > before[name] for name in queries)

    # The gateway reloads nginx once the new replica's address resolves (a few seconds).
    wait_until("GETs through the gateway reach all three query replicas", all_three_answered)
    spread = {name: reads_answered(compose, name) - before[name] for name in queries}
    print(f"\nGETs answered per query replica: {spread}")

    # The mesh's Prometheus finds the three replicas through the compose DNS and scrapes each.
    def prometheus_sees_three() -> bool:
        answer = httpx.get(
            f"{compose.prometheus}/api/v1/query",
            params={"query": 'sum by (instance) (cloudnet_http_requests_total{job="query_api"})'},
        ).json()
        return len(answer["data"]["result"]) == 3

    wait_until("Prometheus scrapes all three query replicas", prometheus_sees_three)


# --- killed containers


def test_a_killed_query_container_fails_no_get_at_the_gateway(
    compose: ComposeMesh, gateway: httpx.Client
) -> None:
    network = create_network(gateway, "kill-query")
    wait_until("the network is visible", lambda: visible(gateway, network["id"]))
    victim = compose.containers("query-api")[-1]

    with get_load(compose.gateway, compose.token(), f"/v1/networks/{network['id']}") as outcomes:
        time.sleep(2)
        podman("kill", "--signal", "KILL", victim)
        time.sleep(6)
        during = sum(outcomes.values())

    retried = outcomes.pop(RETRIED, 0)
    print(f"\nGETs while {victim} was killed: {dict(outcomes)}; {retried} sent again")
    # What the gateway and the surviving replicas said, when anything but a 200 came back or a
    # GET had to be sent again (the gateway's reloads show why).
    if set(outcomes) != {"200"} or retried:
        for name in [compose.container("gateway"), *compose.containers("query-api")]:
            logs = subprocess.run(
                ["podman", "logs", "--tail", "400", name],
                env=podman_environment(),
                capture_output=True,
                text=True,
                check=False,
            )
            lines = (logs.stdout + logs.stderr).splitlines()
            said = [line for line in lines if any(k in line for k in ("WARNING", "reload", "["))]
            print(f"\n{name}:", *said[-8:], sep="\n")
    assert during > 50
    assert set(outcomes) == {"200"}, outcomes
    podman("start", victim)  # back to three replicas for the tests after this one
    wait_until(f"{victim} is healthy again", lambda: compose.healthy(victim))


def test_a_killed_projector_container_hands_its_queues_to_the_other(
    compose: ComposeMesh, gateway: httpx.Client
) -> None:
    network = create_network(gateway, "before-kill")
    wait_until("the network is visible", lambda: visible(gateway, network["id"]))
    projectors = compose.containers("projector")
    assert len(projectors) == 2
    applied = {
        name: metric(compose, name, "cloudnet_projection_events_applied_total")
        for name in projectors
    }
    active = max(projectors, key=lambda name: applied[name])
    standby = next(name for name in projectors if name != active)
    assert applied[active] > 0

    podman("kill", "--signal", "KILL", active)
    written = [create_network(gateway, "after-kill") for _ in range(5)]

    ids = [network["id"] for network in written]
    wait_until("the writes after the kill are visible", lambda: all_visible(gateway, ids))
    assert metric(compose, standby, "cloudnet_projection_events_applied_total") > applied[standby]
    podman("start", active)
    wait_until(f"{active} is healthy again", lambda: compose.healthy(active))


# --- the broker cut off


def test_rabbitmq_cut_off_its_network_for_10_s_loses_nothing(
    compose: ComposeMesh, gateway: httpx.Client
) -> None:
    rabbitmq = compose.container("rabbitmq")
    network = f"{compose.project}_default"
    statuses: Counter[int] = Counter()
    written: list[str] = []

    podman("network", "disconnect", network, rabbitmq)
    try:
        cut_until = time.monotonic() + 10
        while time.monotonic() < cut_until:
            response = gateway.post(
                "/v1/networks", json={"name": f"cut-{uuid.uuid4().hex[:8]}", "cidr": "10.30.0.0/16"}
            )
            statuses[response.status_code] += 1
            if response.status_code == 201:
                written.append(response.json()["id"])
            time.sleep(0.1)
    finally:
        podman("network", "connect", "--alias", "rabbitmq", network, rabbitmq)

    print(f"\ncommands while RabbitMQ was cut off: {dict(statuses)}")
    assert set(statuses) == {201}, statuses
    assert len(written) > 20
    wait_until("events flow again after the reconnect", lambda: all_visible(gateway, written))
    cloudnet_check(compose)


# --- the primary restarted


def test_a_restarted_postgresql_primary_gives_503s_then_recovers(
    compose: ComposeMesh, gateway: httpx.Client
) -> None:
    primary = compose.container("postgres")
    statuses: Counter[int] = Counter()
    retry_after: set[str | None] = set()

    podman("stop", "--time", "10", primary)
    try:
        for _ in range(20):
            response = gateway.post(
                "/v1/networks",
                json={"name": f"down-{uuid.uuid4().hex[:8]}", "cidr": "10.40.0.0/16"},
            )
            statuses[response.status_code] += 1
            if response.status_code == 503:
                retry_after.add(response.headers.get("Retry-After"))
            time.sleep(0.1)
    finally:
        podman("start", primary)

    print(f"\ncommands while the primary was down: {dict(statuses)}")
    assert set(statuses) == {503}, statuses
    assert None not in retry_after

    recovered: list[dict[str, Any]] = []

    def a_command_succeeds() -> bool:
        response = gateway.post(
            "/v1/networks", json={"name": f"up-{uuid.uuid4().hex[:8]}", "cidr": "10.40.0.0/16"}
        )
        if response.status_code == 201:
            recovered.append(response.json())
        return bool(recovered)

    wait_until("commands succeed again after the restart", a_command_succeeds)
    network_id = recovered[0]["id"]
    wait_until("the write after the restart is visible", lambda: visible(gateway, network_id))
    cloudnet_check(compose)


# --- the images


def test_every_container_runs_as_non_root_and_the_app_image_is_small(
    compose: ComposeMesh,
) -> None:
    names = podman(
        "ps",
        "--filter",
        f"label=io.podman.compose.project={compose.project}",
        "--format",
        "{{.Names}}",
    ).split()
    assert len(names) >= 14
    users = {name: compose.exec(name, "id", "-u").stdout.strip() for name in names}
    assert all(uid.isdigit() and uid != "0" for uid in users.values()), users

    size = int(podman("image", "inspect", "localhost/cloudnet/app:local", "--format", "{{.Size}}"))
    print(f"\napp image: {size / 1e6:.0f} MB")
    assert size < 400e6
    # Published ports: the gateway's and Prometheus's, on 127.0.0.1 only.
    ports = podman(
        "ps",
        "--filter",
        f"label=io.podman.compose.project={compose.project}",
        "--format",
        "{{.Ports}}",
    )
    published = {
        part.split("->")[0].strip() for part in ports.replace(",", "\n").split("\n") if "->" in part
    }
    assert {ipaddress.ip_address(p.rsplit(":", 1)[0]) for p in published} == {
        ipaddress.ip_address("127.0.0.1")
    }
