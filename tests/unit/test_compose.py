"""compose.yaml and the Dockerfile, checked where no container engine runs: against the Compose
Specification's JSON schema, and for coherence with the code (every host the mesh names is one
of its services, every process gets the settings the local launcher gives it, every mounted file
and every `python -m` module exists). The configs it mounts are checked by the tools that read
them where this machine has them (nginx, promtool)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic import ValidationError

from infra.cli import app as cloudnet_cli
from infra.compose.gateway import (
    LOCAL_OPEN_FILES,
    consul_servers,
    dns_servers,
    render_gateway_conf,
)
from infra.launcher.gateway import NGINX
from infra.launcher.layout import MeshLayout
from infra.launcher.services import SERVICE_ROLES, service_specs
from infra.settings import DEVELOPMENT_JWT_SECRET, Settings

ROOT = Path(__file__).resolve().parents[2]
#: shared/ lies beside the checkout (DESIGN: `../shared/schemas/compose-spec.json`); a clone
#: made elsewhere on this machine (e.g. /tmp) finds the workplace's copy instead.
_SCHEMA_CANDIDATES = [
    Path(__file__).parents[2].parent / "shared/schemas/compose-spec.json",
    Path("/work/shared/schemas/compose-spec.json"),
]
SCHEMA = next((path for path in _SCHEMA_CANDIDATES if path.exists()), _SCHEMA_CANDIDATES[0])
COMPOSE_DIR = ROOT / "infra/compose"
APP_IMAGE = "cloudnet/app:local"
#: The published ports an operator may move (defaults: 8080 and 9090).
PORT_VARIABLES = {"CLOUDNET_GATEWAY_PORT": "8080", "CLOUDNET_PROMETHEUS_PORT": "9090"}
#: What an operator puts in `.env`: with the ports, the only variables compose.yaml may read.
SECRETS = {
    "CLOUDNET_JWT_SECRET": "a-private-secret-of-at-least-32-characters",
    "POSTGRES_PASSWORD": "pg-password",
    "POSTGRES_REPLICATION_PASSWORD": "replication-password",
    "RABBITMQ_PASSWORD": "rabbit-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
}
VARIABLE = re.compile(r"\$\{(\w+)(:?[-?][^}]*)?\}")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*SECRETS, "DATABASE_URL", "AMQP_URL", "CONSUL_HTTP_ADDR", "READ_DATABASE_URL"]:
        monkeypatch.delenv(name, raising=False)
    for name in [name for name in os.environ if name.startswith("CLOUDNET_")]:
        monkeypatch.delenv(name)


def interpolate(value: str) -> str:
    """`${VAR:?message}` as compose fills it in from `.env` (`$$` is a literal `$`)."""
    values = {**SECRETS, **PORT_VARIABLES}
    return VARIABLE.sub(lambda match: values[match.group(1)], value.replace("$$", "\0")).replace(
        "\0", "$"
    )


def cloudnet_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == APP_IMAGE}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    return {key: interpolate(str(value)) for key, value in service.get("environment", {}).items()}


def python_module(service: Mapping[str, Any]) -> str | None:
    command = service.get("command", [])
    return str(command[2]) if command[:2] == ["python", "-m"] else None


# The Compose Specification.


def test_compose_yaml_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    if not SCHEMA.is_file():
        pytest.fail(f"no Compose schema at {SCHEMA}: shared/ must be checked out beside the repo")
    validator = Draft7Validator(json.loads(SCHEMA.read_text()))

    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(compose)
    ]

    assert not errors, "\n".join(errors)


# The processes: what the local launcher runs, as it runs them.


def replicas(service: Mapping[str, Any]) -> int:
    deploy = service.get("deploy", {})
    # podman-compose reads `replicas` only with an explicit `mode: replicated`.
    assert deploy.get("mode", "replicated") == "replicated"
    if "replicas" in deploy:
        assert deploy.get("mode") == "replicated", "podman-compose needs the mode spelled out"
    return int(deploy.get("replicas", 1))


def test_every_role_of_the_local_mesh_runs_as_often_in_containers(compose: dict[str, Any]) -> None:
    modules: Counter[str | None] = Counter()
    for service in cloudnet_services(compose).values():
        modules[python_module(service)] += replicas(service)
    del modules[None]  # the migration

    assert modules == {role.module: role.instances for role in SERVICE_ROLES}


def test_every_module_the_containers_run_exists(compose: dict[str, Any]) -> None:
    for name, service in cloudnet_services(compose).items():
        module = python_module(service)
        if module is None:
            assert service["command"] == ["cloudnet", "migrate"], name
            continue
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{name} runs `python -m {module}`, which does not exist"
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            assert importlib.util.find_spec(f"{module}.__main__") is not None, name
    commands = {command.name or command.callback.__name__ for command in cloudnet_commands()}
    assert "migrate" in commands


def cloudnet_commands() -> Iterator[Any]:
    for command in cloudnet_cli.registered_commands:
        if command.callback is not None:
            yield command


def test_every_process_gets_the_settings_the_local_launcher_gives_it(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    layout = MeshLayout.from_settings(
        Settings(state_dir=tmp_path), own_postgres=True, own_rabbitmq=True
    )
    launcher_keys = {key for spec in service_specs(layout) for key in spec.env}

    for name, service in cloudnet_services(compose).items():
        missing = launcher_keys - set(environment(service))
        # A container takes its host name as its instance name (Settings.instance).
        missing.discard("CLOUDNET_INSTANCE")
        assert not missing, f"{name} lacks {sorted(missing)}"


@pytest.mark.usefixtures("clean_environment")
def test_every_process_starts_with_its_settings_in_compose_mode(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    instances: set[str] = set()
    monkeypatch.setattr("socket.gethostname", lambda: "a-container")
    for name, service in cloudnet_services(compose).items():
        values = environment(service)
        unknown = [
            key
            for key in values
            if key.startswith("CLOUDNET_")
            and key.removeprefix("CLOUDNET_").lower() not in Settings.model_fields
        ]
        assert not unknown, f"{name} sets {unknown}, which Settings does not read"
        with monkeypatch.context() as patch:
            for key, value in values.items():
                patch.setenv(key, value)
            settings = Settings()

        required = {n for n, field in Settings.model_fields.items() if field.is_required()}
        assert required <= settings.model_fields_set, name
        assert settings.environment == "compose", name
        assert settings.jwt_secret == SECRETS["CLOUDNET_JWT_SECRET"], name
        assert (settings.host, settings.port) == ("0.0.0.0", 8000), name
        assert settings.consul_http_addr == "consul:8500", name
        assert urlsplit(settings.database_url).hostname == "postgres", name
        # Replicas of one service share its environment: each is named by its host name.
        if "CLOUDNET_INSTANCE" in values:
            assert settings.instance not in instances, f"{name} repeats {settings.instance}"
            instances.add(settings.instance)
        else:
            assert settings.instance == "a-container", name


def test_the_query_services_read_from_the_replica(compose: dict[str, Any]) -> None:
    for name, service in cloudnet_services(compose).items():
        read_url = environment(service).get("READ_DATABASE_URL")
        if python_module(service) == "query_api":
            assert read_url is not None, name
            assert urlsplit(read_url).hostname == "postgres-replica", name
        else:
            assert read_url is None, name


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("secret", [None, DEVELOPMENT_JWT_SECRET, "too-short"])
def test_compose_mode_refuses_a_public_or_weak_jwt_secret(
    secret: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDNET_ENVIRONMENT", "compose")
    if secret is not None:
        monkeypatch.setenv("CLOUDNET_JWT_SECRET", secret)

    with pytest.raises(ValidationError, match="CLOUDNET_JWT_SECRET"):
        Settings()


def test_every_secret_comes_from_the_environment_and_is_required() -> None:
    text = (ROOT / "compose.yaml").read_text()
    references = [(n, d) for n, d in VARIABLE.findall(text) if n not in PORT_VARIABLES]

    assert {name for name, _ in references} == set(SECRETS)
    assert all(default.startswith(":?") for _, default in references), "a secret has a default"
    ports = {n: d for n, d in VARIABLE.findall(text) if n in PORT_VARIABLES}
    assert ports == {n: f":-{port}" for n, port in PORT_VARIABLES.items()}
    example = (COMPOSE_DIR / "example.env").read_text()
    assert set(re.findall(r"^(\w+)=", example, re.MULTILINE)) == set(SECRETS)


# Coherence: names, files and ports.


def named_hosts(compose: dict[str, Any]) -> dict[str, str]:
    """Every host the mesh's configs name, and where."""
    hosts: dict[str, str] = {}
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            for part in value.split(","):
                if "://" in part:
                    hosts[str(urlsplit(part).hostname)] = f"{name} {key}"
                elif key == "CONSUL_HTTP_ADDR":
                    hosts[part.rsplit(":", 1)[0]] = f"{name} {key}"
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                hosts[target.rsplit(":", 1)[0]] = f"prometheus job {job['job_name']}"
        for consul in job.get("consul_sd_configs", []):
            hosts[consul["server"].rsplit(":", 1)[0]] = f"prometheus job {job['job_name']}"
    collector = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    for exporter, config in collector["exporters"].items():
        hosts[config["endpoint"].rsplit(":", 1)[0]] = f"otel-collector exporter {exporter}"
    for address in re.findall(
        r'address\s*=\s*"([^"]+)"', (COMPOSE_DIR / "gateway.hcl").read_text()
    ):
        hosts[address.rsplit(":", 1)[0]] = "consul-template"
    for host in re.findall(
        r"--host=(\S+)", (COMPOSE_DIR / "postgres/replica-entrypoint.sh").read_text()
    ):
        hosts[host] = "postgres replica"
    for source in (ROOT / "infra/grafana/provisioning/datasources").glob("*.y*ml"):
        for datasource in yaml.safe_load(source.read_text())["datasources"]:
            hosts[str(urlsplit(datasource["url"]).hostname)] = f"grafana datasource {source.name}"
    return {host: where for host, where in hosts.items() if host not in LOCAL_HOSTS}


def test_every_host_the_mesh_names_is_one_of_its_services(compose: dict[str, Any]) -> None:
    hosts = named_hosts(compose)

    unknown = {host: where for host, where in hosts.items() if host not in compose["services"]}
    assert not unknown
    assert {"postgres", "postgres-replica", "rabbitmq", "consul", "jaeger"} <= set(hosts)


def test_every_mounted_file_is_in_the_repository(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            elif not source.startswith("/"):
                assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"


def test_only_127_0_0_1_is_published(compose: dict[str, Any]) -> None:
    published = [port for s in compose["services"].values() for port in s.get("ports", [])]

    assert published
    assert all(str(port).startswith("127.0.0.1:") for port in published), published


def test_the_dockerfile_builds_every_target_compose_asks_for_as_an_unprivileged_user(
    compose: dict[str, Any],
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    users = {
        stage.split()[2]: re.findall(r"^USER (\S+)", stage, re.MULTILINE)
        for stage in stages
        if len(stage.split()) > 2 and stage.split()[1].upper() == "AS"
    }
    targets = {s["build"]["target"] for s in compose["services"].values() if "build" in s}

    assert targets == {"runtime", "gateway"}
    for target in targets:
        assert users[target], f"stage {target} runs as root"
        assert not users[target][-1].startswith(("root", "0")), target
    for source in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.MULTILINE):
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"


# The mounted configs, read by the tools that will read them.


def rendered_by_consul_template(template: str, passing: Mapping[str, list[str]]) -> str:
    """What consul-template makes of the gateway template's `range service` blocks, given the
    passing `host:port` instances per service (`{{-` trims the whitespace before it)."""
    block = re.compile(
        r'\s*\{\{- range service "([\w-]+)\|passing" \}\}(.*?)'
        r"\s*\{\{- else \}\}(.*?)\s*\{\{- end \}\}",
        re.DOTALL,
    )

    def expand(match: re.Match[str]) -> str:
        service, line, otherwise = match.groups()
        instances = [address.split(":") for address in passing.get(service, [])]
        if not instances:
            return otherwise
        return "".join(
            line.replace("{{ .Address }}", host).replace("{{ .Port }}", port)
            for host, port in instances
        )

    return block.sub(expand, template)


@pytest.mark.skipif(not NGINX.exists(), reason="nginx is not installed")
@pytest.mark.parametrize(
    "passing",
    [
        {"query_api": ["10.0.0.5:8000", "10.0.0.6:8000"], "command_api": ["10.0.0.7:8000"]},
        {},  # nothing passes its check yet
    ],
)
def test_nginx_accepts_the_gateway_config_consul_template_renders(
    passing: dict[str, list[str]], tmp_path: Path
) -> None:
    (tmp_path / "tmp").mkdir()
    conf = tmp_path / "nginx.conf"
    rendered = rendered_by_consul_template(render_gateway_conf(consul_servers, tmp_path), passing)
    conf.write_text(rendered)

    result = subprocess.run(
        [str(NGINX), "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "{{" not in rendered
    assert "listen 8080 " in rendered
    for address in passing.get("query_api", []):
        assert f"server {address} max_fails=2" in rendered


def test_nginx_accepts_the_gateway_config_that_finds_replicas_through_dns(tmp_path: Path) -> None:
    """The local-image gateway (infra/compose/local-images.yaml) names compose services, which
    resolve inside the compose network only: here they are pointed at localhost."""
    (tmp_path / "tmp").mkdir()
    rendered = render_gateway_conf(dns_servers, tmp_path, open_files=LOCAL_OPEN_FILES)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        rendered.replace("query-api:", "localhost:").replace("command-api:", "localhost:")
    )

    result = subprocess.run(
        [str(NGINX), "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "server query-api:8000 max_fails=2" in rendered
    assert "server command-api:8000 max_fails=2" in rendered
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert {"query-api", "command-api"} <= set(services)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_compose_prometheus_config_and_its_rules(tmp_path: Path) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    # Where compose mounts the rules, this checkout has them.
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    config["rule_files"] = [str(ROOT / "infra/prometheus/rules/*.yml")]
    # Debian's Prometheus is built without Consul discovery: promtool checks the rest of the job.
    for job in config["scrape_configs"]:
        if job.pop("consul_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["consul-service:8000"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))

    result = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_finds_what_consul_knows_and_labels_it_like_the_local_mesh() -> None:
    """Fields as documented (not read by a real Prometheus here: Debian's has no Consul
    discovery): https://prometheus.io/docs/prometheus/latest/configuration/configuration/#consul_sd_config
    """
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    [job] = [job for job in config["scrape_configs"] if "consul_sd_configs" in job]

    assert job["consul_sd_configs"] == [{"server": "consul:8500", "tags": ["metrics"]}]
    relabelled = {r["target_label"]: r["source_labels"] for r in job["relabel_configs"]}
    assert relabelled == {
        "job": ["__meta_consul_service"],  # command_api, relay, ...: the launcher's job names
        "instance": ["__meta_consul_service_metadata_instance"],  # Meta.instance: command-1
    }


def test_the_collector_pipeline_uses_only_components_it_configures() -> None:
    collector = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    service = collector["service"]

    assert set(service["extensions"]) <= set(collector["extensions"])
    for pipeline in service["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(collector[kind]), kind
