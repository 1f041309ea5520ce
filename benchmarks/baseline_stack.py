"""The baseline side of the gateway benchmarks, started and stopped here: a database of its own on
the mesh's PostgreSQL, benchmarks/baseline_app.py under uvicorn with 2 workers, and an nginx whose
config the launcher renders from the gateway's template (same directives, limits, keepalive and
rate limit as the mesh's gateway), with both upstreams pointing at the baseline app.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from benchmarks.baseline_app import SCHEMA
from infra.launcher.gateway import nginx_command, write_nginx_conf
from infra.launcher.layout import HOST, VENV_BIN, MeshLayout, Paths, Ports
from infra.launcher.leftovers import descendants
from infra.launcher.programs import Priority, ProcessSpec
from infra.settings import PROJECT_ROOT

READY_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 15


@dataclass(frozen=True, slots=True)
class BaselinePorts:
    """The gateway port, the app's port, and a base whose +4 is nginx's stub_status port."""

    gateway: int
    app: int
    base: int


@dataclass(frozen=True, slots=True)
class BaselineStack:
    url: str
    instance_ids: list[str]
    uvicorn: subprocess.Popen[bytes]
    nginx: subprocess.Popen[bytes]
    #: nginx's error log (its stderr) and its stub_status page.
    nginx_log: Path
    status_url: str

    def program_pids(self) -> dict[str, int]:
        return {"baseline uvicorn (2 workers)": self.uvicorn.pid, "baseline nginx": self.nginx.pid}


def database_url(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def baseline_stack(
    server_url: str, ports: BaselinePorts, rate_limit: int, instances: int
) -> Iterator[BaselineStack]:
    """Everything the baseline needs, torn down (processes stopped, database dropped) on exit."""
    database = f"cloudnet_bench_baseline_{uuid.uuid4().hex[:10]}"
    url = database_url(server_url, database)
    root = Path(tempfile.mkdtemp(prefix="cloudnet-bench-baseline-"))
    uvicorn = nginx = None
    try:
        instance_ids = asyncio.run(_create_database(server_url, database, instances))
        uvicorn = _start_uvicorn(url, ports.app, root)
        nginx = _start_nginx(root, ports, rate_limit)
        stack = BaselineStack(
            f"http://{HOST}:{ports.gateway}",
            instance_ids,
            uvicorn,
            nginx,
            nginx_log=root / "logs" / "nginx.log",
            status_url=f"http://{HOST}:{ports.base + 4}/stub_status",
        )
        _wait_ready(stack)
        yield stack
    finally:
        for process, stop in ((nginx, signal.SIGQUIT), (uvicorn, signal.SIGTERM)):
            if process is not None:
                _stop(process, stop)
        asyncio.run(_drop_database(server_url, database))
        shutil.rmtree(root, ignore_errors=True)


async def _create_database(server_url: str, database: str, instances: int) -> list[str]:
    admin = await asyncpg.connect(database_url(server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(database_url(server_url, database))
    try:
        await connection.execute(SCHEMA)
        ids = [uuid.uuid4() for _ in range(instances)]
        subnet = uuid.uuid4()
        await connection.copy_records_to_table(
            "instances",
            records=[(i, "baseline", "bench", subnet, "small", "running") for i in ids],
            columns=["id", "tenant_id", "name", "subnet_id", "size", "state"],
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return [str(i) for i in ids]


async def _drop_database(server_url: str, database: str) -> None:
    admin = await asyncpg.connect(database_url(server_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


def _start_uvicorn(url: str, port: int, root: Path) -> subprocess.Popen[bytes]:
    command = [
        str(VENV_BIN / "uvicorn"),
        "benchmarks.baseline_app:app",
        *("--host", HOST, "--port", str(port), "--workers", "2"),
        *("--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"),
    ]
    env = {**os.environ, "BASELINE_DATABASE_URL": url}
    with (root / "uvicorn.log").open("wb") as log:
        return subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _start_nginx(root: Path, ports: BaselinePorts, rate_limit: int) -> subprocess.Popen[bytes]:
    layout = MeshLayout(
        paths=Paths(root),
        ports=Ports(gateway=ports.gateway, prometheus=0, base=ports.base),
        database_url="",
        amqp_url="",
        jwt_secret="",
        log_level="WARNING",
        rate_limit=rate_limit,
        own_postgres=False,
        own_rabbitmq=False,
    )
    layout.paths.logs.mkdir(parents=True, exist_ok=True)
    app = [
        ProcessSpec(
            name=f"baseline-{upstream}",
            command=(),
            ports=(ports.app,),
            priority=Priority.SERVICE,
            upstream=upstream,
        )
        for upstream in ("query_api", "command_api")
    ]
    conf = write_nginx_conf(layout, app)
    with (root / "logs" / "nginx.log").open("wb") as log:
        return subprocess.Popen(nginx_command(conf), stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(stack: BaselineStack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        for name, process in (("uvicorn", stack.uvicorn), ("nginx", stack.nginx)):
            if process.poll() is not None:
                raise RuntimeError(f"the baseline's {name} exited with {process.returncode}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{stack.url}/v1/instances?limit=1", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the baseline app did not answer through its nginx in time")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes], stop: signal.Signals) -> None:
    if process.poll() is not None:
        return
    process.send_signal(stop)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        for pid in {process.pid, *descendants(process.pid)}:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_SECONDS)
