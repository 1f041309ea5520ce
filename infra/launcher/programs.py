"""What the launcher runs: one `ProcessSpec` per supervisord program, rendered into its config and
read back by `up`, `status` and `down`."""

from __future__ import annotations

import functools
import os
import shutil
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


#: The nice value of the event pipeline's programs: the relays, the broker and the projectors.
#: On a busy machine the scheduler then runs them before the request handlers, so an event does
#: not wait behind requests on its way to the read models. At 100 commands/s on this 2-core
#: machine in a slow phase (the visibility benchmark, 30 s, alternating): the lag's p99 53-97 ms
#: against 145-293 ms, and no fewer creates/s under wrk (docs/BENCHMARKS.md, fifteenth session).
#: Favouring the relays and projectors without the broker, or the broker alone, did not help;
#: with the machine saturated (200/s there) it made no difference either way.
PIPELINE_NICE = -5


def in_the_event_pipeline(command: tuple[str, ...]) -> tuple[str, ...]:
    """`command` run at `PIPELINE_NICE` through nice(1), where the launcher may raise priorities
    (root, or CAP_SYS_NICE); elsewhere unchanged, at the launcher's own priority."""
    nice = shutil.which("nice")
    if nice is None or not may_raise_priority():
        return command
    return (nice, "-n", str(PIPELINE_NICE), *command)


@functools.cache
def may_raise_priority() -> bool:
    """Whether this process may lower its nice value (and so start programs at a lower one)."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, current - 1)
    except PermissionError:
        return False
    os.setpriority(os.PRIO_PROCESS, 0, current)
    return True
