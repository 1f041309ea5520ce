"""The one settings object every cloudnet process reads once, at start-up.

Values come from the environment (names below) and fall back to what a local mesh started by
`cloudnet up` uses. See https://docs.pydantic.dev/latest/concepts/pydantic_settings/
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_JWT_SECRET = "cloudnet-local-development-secret"


class Settings(BaseSettings):
    """Everything a cloudnet process may be configured with; nothing else reads `os.environ`."""

    model_config = SettingsConfigDict(env_prefix="CLOUDNET_", extra="ignore")

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/cloudnet",
        validation_alias="DATABASE_URL",
    )
    #: Where the query side reads (a streaming replica in compose); None: `database_url`.
    read_database_url: str | None = Field(default=None, validation_alias="READ_DATABASE_URL")
    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        validation_alias="AMQP_URL",
    )
    consul_http_addr: str | None = Field(default=None, validation_alias="CONSUL_HTTP_ADDR")

    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_audience: str = "cloudnet"
    #: `compose` (the containerised mesh) refuses the public development JWT secret.
    environment: Literal["local", "compose"] = "local"

    #: Where this process listens (each HTTP service and each worker's /health + /metrics).
    host: str = "127.0.0.1"
    port: int = 8000
    #: Unique name of this process instance, e.g. `command-1`; used in logs and discovery. By
    #: default the host name: a container's own, where compose runs replicas of one service.
    instance: str = Field(default_factory=lambda: socket.gethostname())
    #: The host other processes and Consul reach this one at; None: `host`, or the address this
    #: machine's hostname resolves to when `host` listens on every interface (a container).
    advertise_address: str | None = None
    log_level: str = "INFO"

    db_pool_min: int = 2
    db_pool_max: int = 10
    #: The command service's pool. Its appends go out in groups (events/groups.py) only while
    #: every connection is busy, so fewer connections make fewer, larger groups: one statement,
    #: transaction and WAL flush for more commands. Under wrk creates (64 connections, two
    #: processes), 2 against 10 alternately: PostgreSQL's CPU per create 95-136 µs against
    #: 139-169, the command services' 216-265 against 231-292 (docs/BENCHMARKS.md, sixteenth
    #: session).
    command_db_pool: int = 2
    #: A dead database must not hang requests: connecting and each statement are bounded.
    db_connect_timeout_seconds: float = 2.0
    db_command_timeout_seconds: float = 10.0

    #: RabbitMQ topic exchange the relay publishes event batches to.
    exchange: str = "cloudnet.events"
    relay_batch_size: int = 500
    relay_idle_poll_max_seconds: float = 0.1
    #: After publishing a partial batch of 4 or more events the relay waits 1 ms per event, at
    #: most this long, before reading the next, so that under load batches gather many events
    #: (fewer messages, fewer projector commits); after a smaller one in a steady stream, 5 ms
    #: (`events.relay.tail.linger_after`). 0 turns lingering off.
    relay_linger_seconds: float = 0.02

    #: How long a GET with X-Min-Position waits for the read model before answering 504.
    min_position_timeout_seconds: float = 5.0

    #: The provisioner: simulated boot time, and where the command services are when there
    #: is no Consul (comma-separated base URLs; the local launcher fills it in).
    boot_delay_seconds: float = 1.0
    command_api_urls: str = "http://127.0.0.1:8000"
    #: OpenTelemetry traces: "none" (default), "console" (development) or "otlp" (a collector).
    tracing: str = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"

    #: Circuit breakers: failures before opening, seconds before a half-open probe.
    breaker_threshold: int = 5
    breaker_ttl_seconds: float = 5.0

    #: State of a local mesh started by `cloudnet up` (pids, configs, logs, own databases).
    state_dir: Path = PROJECT_ROOT / ".cloudnet"
    gateway_port: int = 8080
    prometheus_port: int = 9090
    #: First of the private ports the local launcher hands out to services and own brokers.
    base_port: int = 18100
    #: Requests per second the gateway lets one client address make (burst: twice as many);
    #: beyond that it answers 429. See https://nginx.org/en/docs/http/ngx_http_limit_req_module.html
    gateway_rate_limit: int = 1000
    #: `cloudnet up` also runs a streaming replica of its own PostgreSQL for the query services
    #: to read (as `cloudnet up --replica`); it needs the mesh's own PostgreSQL.
    replica: bool = False

    @model_validator(mode="after")
    def _no_public_secret_in_compose(self) -> Self:
        weak = self.jwt_secret == DEVELOPMENT_JWT_SECRET or len(self.jwt_secret) < 32
        if self.environment == "compose" and weak:
            # HS256 keys shorter than the hash (32 bytes) are weak (RFC 7518, section 3.2).
            raise ValueError(
                "CLOUDNET_JWT_SECRET must be a private secret of at least 32 characters "
                "when CLOUDNET_ENVIRONMENT=compose"
            )
        return self

    @property
    def exports_traces(self) -> bool:
        """Whether spans go anywhere (`infra.telemetry.configure_tracing`)."""
        return self.tracing != "none"
