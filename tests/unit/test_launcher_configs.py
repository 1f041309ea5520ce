"""The configs `cloudnet up` renders (nginx, Prometheus, supervisord), checked by the tools that
will read them: `nginx -t`, `promtool check config` and supervisord's own parser."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from supervisor.options import ServerOptions

from infra.launcher import programs
from infra.launcher.gateway import NGINX, render_nginx_conf, write_nginx_conf
from infra.launcher.layout import MeshLayout
from infra.launcher.mesh import mesh_specs
from infra.launcher.programs import Priority, ProcessSpec
from infra.launcher.prometheus import render_prometheus_yml, write_prometheus_yml
from infra.launcher.services import service_specs
from infra.launcher.supervisor import render_supervisord_conf
from infra.settings import Settings


def make_layout(state_dir: Path, *, own: bool = True) -> MeshLayout:
    settings = Settings(
        state_dir=state_dir,
        base_port=24100,
        gateway_port=24080,
        prometheus_port=24090,
        database_url="postgresql://app:s%40cret@db.example:5432/cloudnet",
        amqp_url="amqp://guest:guest@127.0.0.1:5672/%2F",
        jwt_secret="test-secret",
        gateway_rate_limit=50,
    )
    return MeshLayout.from_settings(settings, own_postgres=own, own_rabbitmq=own)


@pytest.fixture
def layout(tmp_path: Path) -> MeshLayout:
    return make_layout(tmp_path)


def test_nginx_accepts_the_rendered_gateway_config(layout: MeshLayout) -> None:
    layout.paths.logs.mkdir(parents=True)
    conf = write_nginx_conf(layout, service_specs(layout))

    result = subprocess.run(
        [str(NGINX), "-t", "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_gateway_balances_each_api_over_its_two_instances(layout: MeshLayout) -> None:
    conf = render_nginx_conf(layout, service_specs(layout))

    query = conf.split("upstream query_api {")[1].split("}")[0]
    command = conf.split("upstream command_api {")[1].split("}")[0]
    assert query.count("server 127.0.0.1:") == 2
    assert command.count("server 127.0.0.1:") == 2
    assert "listen 127.0.0.1:24080" in conf
    assert "rate=50r/s" in conf


def test_gateway_refuses_to_render_without_instances_of_an_api(layout: MeshLayout) -> None:
    queries_only = [spec for spec in service_specs(layout) if spec.upstream == "query_api"]

    with pytest.raises(ValueError, match="command_api"):
        render_nginx_conf(layout, queries_only)


def test_prometheus_scrapes_every_program_with_metrics(layout: MeshLayout) -> None:
    specs = mesh_specs(layout)

    config = yaml.safe_load(render_prometheus_yml(layout, specs))

    scraped = {
        (job["job_name"], static["labels"]["instance"], static["targets"][0])
        for job in config["scrape_configs"]
        for static in job["static_configs"]
    }
    expected = {
        (spec.metrics.job, spec.name, f"127.0.0.1:{spec.metrics.port}")
        for spec in specs
        if spec.metrics is not None
    }
    assert scraped == expected
    instances = {s[1] for s in scraped}
    assert {"command-1", "query-2", "relay-1", "projector-2", "provisioner-1"} <= instances
    assert {"rabbitmq", "postgres-exporter", "nginx-exporter", "prometheus"} <= instances


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rendered_prometheus_config(layout: MeshLayout) -> None:
    path = write_prometheus_yml(layout, mesh_specs(layout))

    result = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_supervisord_reads_back_every_program_as_specified(layout: MeshLayout) -> None:
    tricky = ProcessSpec(
        name="tricky",
        command=("/bin/echo", "two words", "100%"),
        ports=(),
        priority=Priority.SERVICE,
        env={"A": "x,y=z", "B": "50%", "C": 'say "hi" twice', "D": "{127,0,0,1}"},
    )
    specs = [*mesh_specs(layout), tricky]
    layout.paths.logs.mkdir(parents=True)
    conf = layout.paths.supervisor_conf
    conf.write_text(render_supervisord_conf(layout, specs))

    options = ServerOptions()
    options.configfile = str(conf)
    options.process_config(do_usage=False)

    programs = {
        program.name: program
        for group in options.process_group_configs
        for program in group.process_configs
    }
    assert set(programs) == {spec.name for spec in specs}
    for spec in specs:
        program = programs[spec.name]
        assert program.command.split(" ")[0] == spec.command[0]
        assert dict(program.environment or {}) == dict(spec.env)
        assert program.autostart is not spec.after_migrations
        assert program.priority == spec.priority
    assert programs["postgres"].stopsignal.name == "SIGINT"  # fast shutdown


@pytest.mark.parametrize("value", ['"quoted"', 'it\'s "both"'])
def test_supervisord_config_refuses_values_it_would_garble(layout: MeshLayout, value: str) -> None:
    spec = ProcessSpec("p", ("/bin/true",), (), Priority.SERVICE, env={"X": value})

    with pytest.raises(ValueError, match="supervisord cannot pass"):
        render_supervisord_conf(layout, [spec])


def test_services_get_database_broker_and_secret_of_the_mesh(layout: MeshLayout) -> None:
    env = {spec.name: spec.env for spec in service_specs(layout)}

    assert set(env) == {
        *(f"{role}-{n}" for role in ("command", "query", "relay", "projector") for n in (1, 2)),
        "provisioner-1",
    }
    assert env["relay-2"]["DATABASE_URL"] == layout.database_url
    assert env["query-1"]["AMQP_URL"] == layout.amqp_url
    assert env["command-2"]["CLOUDNET_JWT_SECRET"] == "test-secret"
    assert env["command-2"]["CLOUDNET_INSTANCE"] == "command-2"
    assert len({e["CLOUDNET_PORT"] for e in env.values()}) == len(env)


def test_the_provisioner_finds_the_command_instances_without_consul(layout: MeshLayout) -> None:
    env = {spec.name: spec.env for spec in service_specs(layout)}

    urls = env["provisioner-1"]["CLOUDNET_COMMAND_API_URLS"].split(",")

    assert urls == [
        f"http://127.0.0.1:{env[name]['CLOUDNET_PORT']}" for name in ("command-1", "command-2")
    ]


def test_external_database_and_broker_are_not_started(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, own=False)

    names = {spec.name for spec in mesh_specs(layout)}

    assert "postgres" not in names
    assert "rabbitmq" not in names
    assert layout.database_url.startswith("postgresql://app:")
    exporter = next(s for s in mesh_specs(layout) if s.name == "postgres-exporter")
    assert exporter.env["DATA_SOURCE_NAME"].endswith("/cloudnet?sslmode=disable")


@pytest.mark.parametrize("permitted", [True, False])
def test_the_event_pipeline_runs_at_a_lower_nice_value_where_it_may(
    layout: MeshLayout, monkeypatch: pytest.MonkeyPatch, permitted: bool
) -> None:
    monkeypatch.setattr(programs, "may_raise_priority", lambda: permitted)
    commands = {spec.name: spec.command for spec in mesh_specs(layout)}
    favoured = {"relay-1", "relay-2", "projector-1", "projector-2", "rabbitmq"}

    for name, command in commands.items():
        if name in favoured and permitted:
            assert command[1:3] == ("-n", str(programs.PIPELINE_NICE)), name
            assert Path(command[0]).name == "nice"
            assert Path(command[3]).name in {"python", "rabbitmq-server"}, name
        else:
            assert Path(command[0]).name != "nice", name


def test_may_raise_priority_answers_what_setpriority_allows() -> None:
    before = os.getpriority(os.PRIO_PROCESS, 0)
    programs.may_raise_priority.cache_clear()
    answer = programs.may_raise_priority()

    # Lowering the nice value needs CAP_SYS_NICE, or an RLIMIT_NICE that reaches it.
    limit = resource.getrlimit(resource.RLIMIT_NICE)[0]
    lowest_allowed = -20 if limit == resource.RLIM_INFINITY else 20 - limit
    assert answer is (_has_cap_sys_nice() or lowest_allowed <= before - 1)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # the probe put it back


def _has_cap_sys_nice() -> bool:
    status = Path("/proc/self/status").read_text().splitlines()
    effective = next(line.split()[1] for line in status if line.startswith("CapEff:"))
    return bool(int(effective, 16) & (1 << 23))  # CAP_SYS_NICE
