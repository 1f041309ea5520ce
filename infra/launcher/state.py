"""How every `cloudnet` command finds the mesh of its checkout: `up` writes `mesh.env` into the
state directory and later commands read Settings from the environment first, then that file."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.launcher.layout import Paths
from infra.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from infra.launcher.layout import MeshLayout


@dataclass(frozen=True, slots=True)
class MeshSettings:
    """Settings as a `cloudnet` command sees them, and which of them the environment set (as
    opposed to mesh.env or defaults): `up` runs its own PostgreSQL unless DATABASE_URL is set."""

    settings: Settings
    from_environment: frozenset[str]

    @property
    def own_postgres(self) -> bool:
        return "database_url" not in self.from_environment

    @property
    def own_rabbitmq(self) -> bool:
        return "amqp_url" not in self.from_environment


def load_settings(state_dir: Path | None = None) -> MeshSettings:
    """Settings of the mesh in `state_dir` (default: CLOUDNET_STATE_DIR or <checkout>/.cloudnet);
    the real environment wins over mesh.env."""
    from_environment = Settings() if state_dir is None else Settings(state_dir=state_dir)
    mesh_env = Paths(from_environment.state_dir).mesh_env
    settings = Settings(_env_file=mesh_env, state_dir=from_environment.state_dir)
    return MeshSettings(settings, frozenset(from_environment.model_fields_set))


def jwt_secret(settings: Settings) -> str:
    """The configured secret, else one made now (`up` then keeps it in mesh.env): the default in
    Settings is public, so a mesh must not sign tokens with it."""
    if "jwt_secret" in settings.model_fields_set:
        return settings.jwt_secret
    return secrets.token_urlsafe(32)


def write_mesh_env(layout: MeshLayout) -> None:
    """What later commands need to reach this mesh; readable by the owner only (it holds the JWT
    secret), replaced atomically so a concurrent reader never sees half a file."""
    values = {
        "DATABASE_URL": layout.database_url,
        "AMQP_URL": layout.amqp_url,
        "CLOUDNET_JWT_SECRET": layout.jwt_secret,
        "CLOUDNET_GATEWAY_PORT": str(layout.ports.gateway),
        "CLOUDNET_PROMETHEUS_PORT": str(layout.ports.prometheus),
        "CLOUDNET_BASE_PORT": str(layout.ports.base),
        "CLOUDNET_GATEWAY_RATE_LIMIT": str(layout.rate_limit),
    }
    if layout.read_database_url is not None:
        values["READ_DATABASE_URL"] = layout.read_database_url
    path = layout.paths.mesh_env
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("# Written by `cloudnet up`: how `cloudnet` commands find this mesh.\n")
        # A JSON string is a valid double-quoted dotenv value (same escapes).
        file.writelines(f"{key}={json.dumps(value)}\n" for key, value in values.items())
    temporary.replace(path)
