"""The boot loop: picks due pending boots and marks those instances running."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

import asyncpg
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge

from infra.breakers import BreakerOpen
from infra.discovery import NoInstances
from infra.telemetry import context_of, tracer
from projectors.provisioner.command_client import (
    TRANSPORT_ERRORS,
    PermanentFailure,
    TransientFailure,
)

if TYPE_CHECKING:
    from projectors.provisioner.boots import PendingBoots
    from projectors.provisioner.command_client import CommandServiceClient

log = logging.getLogger(__name__)

BOOTED = Counter("cloudnet_provisioner_boots_total", "Boots finished, by outcome.", ["outcome"])
PENDING = Gauge("cloudnet_provisioner_pending_boots", "Instances waiting to be booted.")

# Claim with a lease in one short statement, then call the command service outside any
# transaction: a transaction held open across HTTP calls would hold back every reader of the
# event store (see events.store). SKIP LOCKED lets several provisioners share the work; a
# provisioner that dies mid-boot leaves the lease to expire and another takes the boot over.
_CLAIM = """
UPDATE {table} SET due_at = now() + interval '30 seconds', attempts = attempts + 1
WHERE instance_id IN (
    SELECT instance_id FROM {table} WHERE due_at <= now()
    ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING instance_id, tenant_id, attempts, traceparent
"""
_BACK_OFF = """
UPDATE {table}
SET due_at = now() + least(interval '1 second' * power(2, attempts - 1), interval '30 seconds')
WHERE instance_id = $1
"""


class BootLoop:
    def __init__(
        self,
        pool: asyncpg.Pool,
        boots: PendingBoots,
        client: CommandServiceClient,
        idle_seconds: float = 0.1,
        batch: int = 20,
    ) -> None:
        self.pool, self.boots, self.client = pool, boots, client
        self.idle_seconds, self.batch = idle_seconds, batch
        self._next_count = 0.0

    async def run(self) -> None:
        while True:
            try:
                booted = await self.boot_due()
            except (TimeoutError, OSError, asyncpg.PostgresError) as error:
                log.warning("boot pass failed: %s", error)
                booted = 0
            if not booted:
                await asyncio.sleep(self.idle_seconds)

    async def boot_due(self) -> int:
        """Boot every due instance once; returns how many were handled."""
        table = self.boots.table
        if time.monotonic() >= self._next_count:  # the gauge, not every idle pass of the loop
            PENDING.set(await self.pool.fetchval(f"SELECT count(*) FROM {table}"))
            self._next_count = time.monotonic() + 1.0
        rows = await self.pool.fetch(_CLAIM.format(table=table), self.batch)
        # The claimed boots run concurrently (one HTTP call each, at most `batch` at once):
        # one at a time, a burst of launches drained at ~25 boots/s (docs/BENCHMARKS.md).
        outcomes = await asyncio.gather(*(self._traced_boot(row) for row in rows))
        finished = []
        for row, outcome in zip(rows, outcomes, strict=True):
            BOOTED.labels(outcome).inc()
            if outcome == "retry":
                await self.pool.execute(_BACK_OFF.format(table=table), row["instance_id"])
            else:
                finished.append(row["instance_id"])
        if finished:
            await self.pool.execute(
                f"DELETE FROM {table} WHERE instance_id = ANY($1::uuid[])", finished
            )
        return len(rows)

    async def _traced_boot(self, row: asyncpg.Record) -> str:
        # The boot continues the trace of the launch that asked for it.
        with tracer.start_as_current_span(
            "provisioner.boot", context=context_of(row["traceparent"]), kind=SpanKind.INTERNAL
        ):
            return await self._boot(row["tenant_id"], row["instance_id"])

    async def _boot(self, tenant_id: str, instance_id: uuid.UUID) -> str:
        try:
            await self.client.mark_running(tenant_id, instance_id)
        except PermanentFailure as error:  # e.g. terminated meanwhile: nothing left to boot
            log.info("instance %s not booted: %s", instance_id, error)
            return "refused"
        except (TransientFailure, BreakerOpen, NoInstances, *TRANSPORT_ERRORS) as error:
            log.warning("instance %s boot deferred: %s", instance_id, error)
            return "retry"
        return "booted"
