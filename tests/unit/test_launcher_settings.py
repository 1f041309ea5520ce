"""How a mesh's ports are laid out, and how later `cloudnet` commands find it via mesh.env."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from infra.launcher.layout import MeshLayout
from infra.launcher.mesh import mesh_specs
from infra.launcher.state import jwt_secret, load_settings, write_mesh_env
from infra.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLOUDNET_") or name in {"DATABASE_URL", "AMQP_URL"}:
            monkeypatch.delenv(name)


def own_layout(state_dir: Path, base: int, gateway: int, prometheus: int) -> MeshLayout:
    settings = Settings(
        state_dir=state_dir, base_port=base, gateway_port=gateway, prometheus_port=prometheus
    )
    return MeshLayout.from_settings(settings, own_postgres=True, own_rabbitmq=True)


def mesh_ports(layout: MeshLayout) -> list[int]:
    return [port for spec in mesh_specs(layout) for port in spec.ports]


def test_every_program_of_a_mesh_gets_its_own_ports(tmp_path: Path) -> None:
    ports = mesh_ports(own_layout(tmp_path, 18100, 8080, 9090))

    assert len(ports) == len(set(ports))
    assert {8080, 9090, 18100} <= set(ports)


def test_two_meshes_with_other_ports_and_state_share_nothing(tmp_path: Path) -> None:
    developer = own_layout(tmp_path / "dev", 18100, 8080, 9090)
    tests = own_layout(tmp_path / "e2e", 22100, 22080, 22090)

    assert not set(mesh_ports(developer)) & set(mesh_ports(tests))
    assert developer.identifier != tests.identifier  # RabbitMQ node names, supervisord ids


def test_own_database_and_broker_listen_on_private_ports(tmp_path: Path) -> None:
    layout = own_layout(tmp_path, 18100, 8080, 9090)

    assert layout.database_url == "postgresql://postgres@127.0.0.1:18100/cloudnet"
    assert layout.amqp_url == "amqp://guest:guest@127.0.0.1:18101/"


def test_later_commands_find_the_mesh_through_mesh_env(tmp_path: Path) -> None:
    layout = own_layout(tmp_path, 22100, 22080, 22090)
    write_mesh_env(dataclasses.replace(layout, jwt_secret="s3cret"))

    loaded = load_settings(tmp_path).settings

    assert loaded.database_url == layout.database_url
    assert loaded.amqp_url == layout.amqp_url
    assert loaded.jwt_secret == "s3cret"
    assert (loaded.base_port, loaded.gateway_port, loaded.prometheus_port) == (22100, 22080, 22090)
    assert stat.S_IMODE(layout.paths.mesh_env.stat().st_mode) == 0o600  # it holds the secret


def test_the_environment_wins_over_mesh_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mesh_env(own_layout(tmp_path, 22100, 22080, 22090))
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/cloudnet")

    mesh = load_settings(tmp_path)

    assert mesh.settings.database_url == "postgresql://elsewhere/cloudnet"
    assert not mesh.own_postgres
    assert mesh.own_rabbitmq  # AMQP_URL comes from mesh.env, which `up` itself wrote


def test_state_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDNET_STATE_DIR", str(tmp_path))
    write_mesh_env(own_layout(tmp_path, 23100, 23080, 23090))

    assert load_settings().settings.base_port == 23100


def test_a_mesh_gets_a_random_secret_unless_one_is_configured(tmp_path: Path) -> None:
    fresh = load_settings(tmp_path).settings
    configured = Settings(jwt_secret="given")

    first, second = jwt_secret(fresh), jwt_secret(fresh)

    assert first != second
    assert len(first) >= 40
    assert first != Settings().jwt_secret
    assert jwt_secret(configured) == "given"
