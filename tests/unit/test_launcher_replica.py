"""`cloudnet up --replica` as config: a primary set up to stream, a replica on a port of its own,
the query services (and only they) pointed at it, later commands told where it is, and a clear
refusal when the database is an external one."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.launcher.layout import MeshLayout
from infra.launcher.mesh import mesh_specs
from infra.launcher.programs import ProcessSpec
from infra.launcher.replica import REPLICATION_ACCESS, allow_replication
from infra.launcher.state import load_settings, write_mesh_env
from infra.settings import Settings

REPLICA_URL = "postgresql://postgres@127.0.0.1:24108/cloudnet"
INITDB_RULES = """\
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
"""


def make_layout(state_dir: Path, *, replica: bool) -> MeshLayout:
    settings = Settings(state_dir=state_dir, base_port=24100, gateway_port=24080)
    return MeshLayout.from_settings(
        settings, own_postgres=True, own_rabbitmq=True, own_replica=replica
    )


def specs_by_name(layout: MeshLayout) -> dict[str, ProcessSpec]:
    return {spec.name: spec for spec in mesh_specs(layout)}


def test_the_replica_runs_on_a_port_and_in_a_directory_of_its_own(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, replica=True)

    replica = specs_by_name(layout)["postgres-replica"]
    ports = [port for spec in mesh_specs(layout) for port in spec.ports]

    assert replica.ports == (24108,)
    assert len(ports) == len(set(ports))
    assert str(tmp_path / "postgres-replica" / "data") in replica.command
    assert replica.after_migrations  # cloned from the migrated primary, so started after it
    assert layout.read_database_url == REPLICA_URL


def test_the_primary_streams_only_when_the_mesh_has_a_replica(tmp_path: Path) -> None:
    with_replica = specs_by_name(make_layout(tmp_path, replica=True))
    without = specs_by_name(make_layout(tmp_path, replica=False))

    assert "max_wal_senders=10" in with_replica["postgres"].command
    assert "hot_standby_feedback=on" in with_replica["postgres-replica"].command
    # A hot standby refuses to start with a lower max_wal_senders than its primary's.
    assert "max_wal_senders=10" in with_replica["postgres-replica"].command
    assert not any("wal" in argument for argument in without["postgres"].command)
    assert "postgres-replica" not in without


def test_only_the_query_services_read_the_replica(tmp_path: Path) -> None:
    specs = specs_by_name(make_layout(tmp_path, replica=True))

    readers = {name for name, spec in specs.items() if "READ_DATABASE_URL" in spec.env}

    assert readers == {"query-1", "query-2"}
    assert {specs[name].env["READ_DATABASE_URL"] for name in readers} == {REPLICA_URL}


def test_without_a_replica_no_service_gets_a_read_database(tmp_path: Path) -> None:
    specs = mesh_specs(make_layout(tmp_path, replica=False))

    assert not [spec.name for spec in specs if "READ_DATABASE_URL" in spec.env]


@pytest.mark.parametrize(("replica", "expected"), [(True, REPLICA_URL), (False, None)])
def test_later_commands_find_the_replica_through_mesh_env(
    tmp_path: Path, replica: bool, expected: str | None
) -> None:
    write_mesh_env(make_layout(tmp_path, replica=replica))

    assert load_settings(tmp_path).settings.read_database_url == expected


def test_initdb_rules_already_let_the_replica_stream(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, replica=True)
    hba = layout.paths.postgres / "data" / "pg_hba.conf"
    hba.parent.mkdir(parents=True)
    hba.write_text(INITDB_RULES)

    allow_replication(layout)

    assert hba.read_text() == INITDB_RULES


def test_a_cluster_without_a_replication_rule_gets_one_once(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, replica=True)
    hba = layout.paths.postgres / "data" / "pg_hba.conf"
    hba.parent.mkdir(parents=True)
    hba.write_text("host all all 127.0.0.1/32 trust\n")

    allow_replication(layout)
    allow_replication(layout)

    assert hba.read_text().splitlines().count(REPLICATION_ACCESS) == 1


@pytest.mark.parametrize(
    ("arguments", "environment"),
    [(["up", "--replica"], {}), (["up"], {"CLOUDNET_REPLICA": "1"})],
)
def test_up_refuses_a_replica_of_an_external_database(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    environment: dict[str, str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.example:5432/cloudnet")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(app, ["--state-dir", str(tmp_path), *arguments])

    assert result.exit_code == 2
    assert "READ_DATABASE_URL" in result.output
    assert not list(tmp_path.iterdir())  # nothing was written, let alone started
