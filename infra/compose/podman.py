"""The containerised mesh on podman, with images built on this machine (`make compose-up`,
`make compose-down`): compose.yaml + infra/compose/local-images.yaml under podman-compose.

podman-compose ignores `condition: service_healthy` and schedules no health checks, so this
starts the services in dependency order and polls each one itself: the databases and the
broker, then the replica, then the migration (which must exit 0), then the cloudnet processes,
the gateway and Prometheus, and last the whole path through the gateway.

The secrets compose.yaml requires are made once per project and kept (mode 0600) in
`<state dir>/compose/<project>.env`: the database volumes remember the passwords they were
initialised with, so a later `up` must give the same ones.

    python -m infra.compose.podman up [--project cloudnet] [--gateway-port 8080]
    python -m infra.compose.podman down [--project cloudnet] [--volumes]
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from infra.auth import issue_token

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = (ROOT / "compose.yaml", ROOT / "infra/compose/local-images.yaml")
CONTAINERS_CONF = ROOT / "infra/compose/local/containers.conf"
IMAGES_SCRIPT = ROOT / "infra/compose/local/images.sh"
#: The cloudnet processes, started once the migration has run (compose.yaml's services).
APP_SERVICES = ("command-api", "query-api", "relay", "projector", "provisioner")
SECRET_NAMES = (
    "CLOUDNET_JWT_SECRET",
    "POSTGRES_PASSWORD",
    "POSTGRES_REPLICATION_PASSWORD",
    "RABBITMQ_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
HEALTH_PROBE = (
    "import sys, urllib.request\n"
    "try:\n"
    "    urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)\n"
    "except Exception as error:\n"
    "    sys.exit(str(error))\n"
)


class ComposeError(RuntimeError):
    """The containerised mesh could not be built, started or reached."""


def podman_environment() -> dict[str, str]:
    """The environment every podman call here runs in: podman's config for this machine."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def require_tools() -> None:
    missing = [tool for tool in ("podman", "podman-compose", "debootstrap") if not _which(tool)]
    if missing:
        raise ComposeError(
            f"missing {', '.join(missing)}: `make compose-up` installs them "
            "(apt-get install podman debootstrap; podman-compose comes with the dev venv)"
        )


def _which(tool: str) -> str | None:
    """The venv's copy first: podman-compose is pinned in uv.lock (Debian's 1.0.3 cannot read
    the override's !override tags)."""
    venv_bin = Path(sys.executable).parent
    return shutil.which(tool, path=str(venv_bin)) or shutil.which(tool)


def build_images() -> None:
    """Every image of the local-image mesh (infra/compose/local/images.sh), from cache if
    nothing changed."""
    require_tools()
    _run(["bash", str(IMAGES_SCRIPT)], capture=False)


@dataclass
class ComposeMesh:
    """One compose project of the local-image mesh."""

    project: str = "cloudnet"
    gateway_port: int = 8080
    prometheus_port: int = 9090
    state_dir: Path = field(default_factory=lambda: ROOT / ".cloudnet")
    _secrets: dict[str, str] | None = field(default=None, init=False, repr=False)

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "compose" / f"{self.project}.env"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def secrets(self) -> dict[str, str]:
        """The project's secrets, made on first use and kept (read from the file once)."""
        if self._secrets is None:
            self._secrets = self._load_or_make_secrets()
        return self._secrets

    def _load_or_make_secrets(self) -> dict[str, str]:
        if self.secrets_file.is_file():
            lines = self.secrets_file.read_text().splitlines()
            values = dict(line.split("=", 1) for line in lines if "=" in line)
            if set(SECRET_NAMES) <= set(values):
                return values
        values = {name: secrets.token_urlsafe(32) for name in SECRET_NAMES}
        self.secrets_file.parent.mkdir(parents=True, exist_ok=True)
        self.secrets_file.touch(mode=0o600)
        self.secrets_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        return values

    def environment(self) -> dict[str, str]:
        return {
            **podman_environment(),
            **self.secrets(),
            "CLOUDNET_GATEWAY_PORT": str(self.gateway_port),
            "CLOUDNET_PROMETHEUS_PORT": str(self.prometheus_port),
        }

    def compose(self, *arguments: str, capture: bool = True) -> str:
        files = [part for path in COMPOSE_FILES for part in ("-f", str(path))]
        command = [_which("podman-compose") or "podman-compose", "-p", self.project, *files]
        return _run([*command, *arguments], env=self.environment(), capture=capture)

    def token(
        self, tenant: str = "acme", scopes: Sequence[str] = ("cloud:read", "cloud:write")
    ) -> str:
        return issue_token(
            secret=self.secrets()["CLOUDNET_JWT_SECRET"], tenant=tenant, scopes=list(scopes)
        )

    # --- containers

    def containers(self, service: str, *, running_only: bool = True) -> list[str]:
        """Names of the service's containers, in replica order."""
        arguments = [
            "ps",
            *([] if running_only else ["--all"]),
            "--filter",
            f"label=io.podman.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        ]
        return sorted(podman(*arguments).split())

    def container(self, service: str) -> str:
        names = self.containers(service)
        if not names:
            raise ComposeError(f"no running container of {service} in project {self.project}")
        return names[0]

    def exec(
        self, container: str, *command: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "exec", container, *command],
            env=podman_environment(),
            capture_output=True,
            text=True,
            check=check,
        )

    def healthy(self, container: str) -> bool:
        return self.exec(container, "python", "-c", HEALTH_PROBE, check=False).returncode == 0

    # --- lifecycle

    def up(self, *, timeout: float = 300.0, say: Callable[[str], None] = print) -> None:
        """Start every service in order, polling each until ready; raises ComposeError with
        the laggard's last log lines if one is not ready within `timeout` seconds."""
        require_tools()
        deadline = time.monotonic() + timeout
        say(f"starting the databases and the broker (project {self.project})")
        self.compose("up", "-d", "--no-build", "--no-deps", "postgres", "rabbitmq")
        self.wait_for("postgres", self._postgres_ready, deadline)
        say("postgres ready; starting its streaming replica")
        self.compose("up", "-d", "--no-build", "--no-deps", "postgres-replica")
        self.wait_for("postgres-replica", self._postgres_ready, deadline)
        self.wait_for("rabbitmq", self._rabbitmq_ready, deadline)
        say("replica and rabbitmq ready; migrating")
        self.migrate(deadline)
        say("starting the cloudnet processes")
        self.compose("up", "-d", "--no-build", "--no-deps", *APP_SERVICES)
        for service in APP_SERVICES:
            self.wait_for(service, self.healthy, deadline)
        say("services healthy; starting the gateway and prometheus")
        self.compose("up", "-d", "--no-build", "--no-deps", "gateway", "prometheus")
        self.wait_until("the gateway", self._gateway_answers, deadline, logs_of="gateway")
        say(f"up: gateway {self.gateway}, prometheus {self.prometheus}")

    def migrate(self, deadline: float) -> None:
        self.compose("up", "-d", "--no-build", "--no-deps", "migrate")
        names = self.containers("migrate", running_only=False)
        if not names:
            raise ComposeError("the migrate container was not created")
        remaining = max(1, int(deadline - time.monotonic()))
        try:
            code = podman("wait", names[0], timeout=remaining).strip()
        except subprocess.TimeoutExpired as error:
            raise ComposeError(f"the migration did not finish:\n{self.logs(names[0])}") from error
        if code != "0":
            raise ComposeError(f"the migration exited {code}:\n{self.logs(names[0])}")

    def scale(self, service: str, replicas: int) -> None:
        self.compose(
            "up", "-d", "--no-build", "--no-deps", "--scale", f"{service}={replicas}", service
        )

    def down(self, *, volumes: bool = False) -> None:
        """Stop and remove the project's containers and network (and with `volumes` its data).
        podman-compose removes only the replicas the file declares: containers added by
        `scale` are removed here by their project label."""
        self.compose("down", *(["--volumes"] if volumes else []), "--timeout", "10")
        label = f"label=io.podman.compose.project={self.project}"
        leftovers = podman("ps", "--all", "--quiet", "--filter", label).split()
        if leftovers:
            podman("rm", "--force", "--time", "10", *leftovers)
        networks = podman("network", "ls", "--quiet", "--filter", label).split()
        if networks:
            podman("network", "rm", "--force", *networks)
        if volumes:
            self.secrets_file.unlink(missing_ok=True)
            self._secrets = None

    def logs(self, container: str, lines: int = 40) -> str:
        result = subprocess.run(
            ["podman", "logs", "--tail", str(lines), container],
            env=podman_environment(),
            capture_output=True,
            text=True,
        )
        return result.stdout + result.stderr

    # --- readiness

    def wait_for(self, service: str, ready: Callable[[str], bool], deadline: float) -> None:
        """Every running container of `service` ready."""

        def all_ready() -> bool:
            names = self.containers(service)
            return bool(names) and all(ready(name) for name in names)

        self.wait_until(service, all_ready, deadline, logs_of=service)

    def wait_until(
        self, what: str, ready: Callable[[], bool], deadline: float, *, logs_of: str
    ) -> None:
        while not ready():
            if time.monotonic() > deadline:
                names = self.containers(logs_of, running_only=False)
                logs = "\n".join(f"--- {name}\n{self.logs(name)}" for name in names)
                raise ComposeError(f"{what} not ready in time\n{logs}")
            time.sleep(0.5)

    def _postgres_ready(self, container: str) -> bool:
        # TCP, not the socket: during its first initialisation the server listens on the
        # socket only, and the init scripts are not done before it listens on TCP.
        probe = [
            "pg_isready",
            "--quiet",
            "--host=127.0.0.1",
            "--username=cloudnet",
            "--dbname=cloudnet",
        ]
        return self.exec(container, *probe, check=False).returncode == 0

    def _rabbitmq_ready(self, container: str) -> bool:
        probe = ["rabbitmq-diagnostics", "-q", "check_port_connectivity"]
        return self.exec(container, *probe, check=False).returncode == 0

    def _gateway_answers(self) -> bool:
        request = urllib.request.Request(
            f"{self.gateway}/v1/networks", headers={"Authorization": f"Bearer {self.token()}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def podman(*arguments: str, timeout: float | None = None) -> str:
    return _run(["podman", *arguments], env=podman_environment(), timeout=timeout)


def _run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
    timeout: float | None = None,
) -> str:
    result = subprocess.run(
        list(command),
        env=dict(env) if env is not None else podman_environment(),
        capture_output=capture,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        output = (result.stdout or "") + (result.stderr or "") if capture else ""
        raise ComposeError(f"`{' '.join(command[:6])} ...` exited {result.returncode}\n{output}")
    return result.stdout or ""


# --- the command line (`make compose-up`, `make compose-down`)

cli = typer.Typer(help="The containerised mesh on podman, local images.", add_completion=False)


@cli.command()
def up(
    project: Annotated[str, typer.Option(help="compose project name")] = "cloudnet",
    gateway_port: Annotated[int, typer.Option(help="host port of the gateway")] = 8080,
    prometheus_port: Annotated[int, typer.Option(help="host port of Prometheus")] = 9090,
    timeout: Annotated[float, typer.Option(help="seconds until everything must be ready")] = 300,
) -> None:
    """Build the images (cached) and start the mesh, waiting until it answers."""
    mesh = ComposeMesh(project, gateway_port, prometheus_port)
    try:
        build_images()
        mesh.up(timeout=timeout)
    except ComposeError as error:
        typer.echo(f"compose-up failed: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(
        f"a token: CLOUDNET_JWT_SECRET=$(grep ^CLOUDNET_JWT_SECRET= {mesh.secrets_file} | "
        "cut -d= -f2) cloudnet token --tenant acme --scope 'cloud:read cloud:write'"
    )


@cli.command()
def down(
    project: Annotated[str, typer.Option(help="compose project name")] = "cloudnet",
    volumes: Annotated[bool, typer.Option(help="also delete the data volumes")] = False,
) -> None:
    """Stop and remove the mesh's containers (and with --volumes its data)."""
    try:
        ComposeMesh(project).down(volumes=volumes)
    except ComposeError as error:
        typer.echo(f"compose-down failed: {error}", err=True)
        raise typer.Exit(1) from error


@cli.command()
def status(project: Annotated[str, typer.Option(help="compose project name")] = "cloudnet") -> None:
    """The project's containers and their state, as JSON lines."""
    out = podman(
        "ps", "--all", "--filter", f"label=io.podman.compose.project={project}", "--format", "json"
    )
    for container in json.loads(out or "[]"):
        typer.echo(json.dumps({"name": container["Names"][0], "state": container["State"]}))


if __name__ == "__main__":
    cli()
