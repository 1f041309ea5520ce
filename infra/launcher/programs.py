"""What the launcher runs: one `ProcessSpec` per supervisord program, rendered into its config and
read back by `up`, `status` and `down`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.launcher.health import Probe


class Priority(IntEnum):
    """supervisord starts low numbers first and stops high numbers first, so the gateway goes
    down before the services and the services before the databases they write to."""

    STORAGE = 10
    MONITORING = 50
    SERVICE = 100
    GATEWAY = 200


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """A /metrics endpoint for Prometheus: `job` groups the instances of one kind of program."""

    job: str
    port: int
    path: str = "/metrics"


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One program of the mesh and everything the launcher needs to run, probe and scrape it."""

    name: str
    command: tuple[str, ...]
    #: Every 127.0.0.1 port the program listens on: checked free before `up` and after `down`.
    ports: tuple[int, ...]
    priority: Priority
    env: Mapping[str, str] = field(default_factory=dict)
    probe: Probe | None = None
    metrics: ScrapeTarget | None = None
    #: The gateway upstream this instance serves in (`command_api`, `query_api`), if any.
    upstream: str | None = None
    #: Programs that need the migrated database are started by `up` after migrations.
    after_migrations: bool = False
    user: str | None = None
    stop_signal: str = "TERM"
    stop_wait_seconds: int = 15
    #: Send the stop signal to the whole process group; off for servers that stop their own
    #: children in order (a SIGKILL after `stop_wait_seconds` always takes the whole group).
    stop_as_group: bool = True
