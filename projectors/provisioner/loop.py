"""The boot loop: picks due pending boots and marks those instances running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING

import asyncpg
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge

from infra.breakers import BreakerOpen
from infra.discovery import NoInstances
from infra.telemetry import context_of, span
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
#: Its series by outcome, looked up once (`labels()` takes a lock and builds a key per call).
_BOOTED = {outcome: BOOTED.labels(outcome) for outcome in ("booted", "refused", "retry")}
PENDING = Gauge("cloudnet_provisioner_pending_boots", "Instances waiting to be booted.")

# Claim with a lease in one short statement, then call the command service outside any
# transaction: a transaction held open across HTTP calls would hold back every reader of the
# event store (see events.store). SKIP LOCKED lets several provisioners share the work; a
# provisioner that dies mid-boot leaves the lease to expire and another takes the boot over.
# The due rows are picked once, by an InitPlan (`= ANY (ARRAY(...))`): as `IN (SELECT ...
# LIMIT $1 FOR UPDATE SKIP LOCKED)`, a plan made while the table was empty ran the subquery again
# for every row, each time skipping the rows just updated, and so claimed every due boot at
# once, in time quadratic in their number (tests/integration/test_provisioner.py).
_CLAIM = """
UPDATE {table} SET due_at = now() + interval '30 seconds', attempts = attempts + 1
WHERE instance_id = ANY (ARRAY(
    SELECT instance_id FROM {table} WHERE due_at <= now()
    ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
))
RETURNING instance_id, tenant_id, attempts, traceparent
"""

_BACK_OFF = """
UPDATE {table}
SET due_at = now() + least(interval '1 second' * power(2, attempts - 1), interval '30 seconds')
WHERE instance_id = $1
"""


class BootLoop:
    """Keeps up to `batch` boots in flight: the boots that end free their places for the next due
    ones. Boots used to go in rounds of `batch`, each round waiting for its slowest call, so one
    hung call held back every other boot for up to its retries' timeouts (docs/BENCHMARKS.md,
    seventh session).

    The places are filled a quarter of `batch` at a time (or when none is in flight): the client
    sends a tenant's boots started together in one call, and places filled one by one as boots
    ended made calls of one or two boots (docs/BENCHMARKS.md, eleventh session).

    Unless places are what limits it, the loop looks for due boots again `gather_seconds` after a
    look that found some, not as soon as a boot ends: boots come due a few at a time, and looking
    on every boot's end took a claim and a call per tenant for every two boots under wrk
    (docs/BENCHMARKS.md, thirteenth session). A boot then waits at most that much longer."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        boots: PendingBoots,
        client: CommandServiceClient,
        idle_seconds: float = 0.1,
        batch: int = 200,
        gather_seconds: float = 0.05,
    ) -> None:
        self.pool, self.boots, self.client = pool, boots, client
        self.idle_seconds, self.batch, self.gather_seconds = idle_seconds, batch, gather_seconds
        self.refill = max(1, batch // 4)
        self._next_count = 0.0
        self._settled: list[uuid.UUID] = []  # refused, their rows not yet removed

    async def run(self) -> None:
        running: set[asyncio.Task[None]] = set()
        # Set when a boot ends. `asyncio.wait(running, FIRST_COMPLETED)` did the same but put
        # a callback on every running boot at every wake-up: half a million calls a minute
        # under load (docs/BENCHMARKS.md, eighth session).
        freed = asyncio.Event()

        def ended(task: asyncio.Task[None]) -> None:
            running.discard(task)
            freed.set()

        try:
            while True:
                freed.clear()  # before claiming: a boot that ends meanwhile is not missed
                claimed = 0
                if self._may_claim(running):
                    try:
                        rows = await self._claim(self.batch - len(running))
                    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
                        log.warning("boot pass failed: %s", error)
                        rows = []
                    for row in rows:
                        task = asyncio.create_task(self._boot_and_settle(row))
                        running.add(task)
                        task.add_done_callback(ended)
                    claimed = len(rows)
                if self._may_claim(running):  # what is due limits the claims, not the places
                    await asyncio.sleep(self.gather_seconds if claimed else self.idle_seconds)
                    continue
                # A place frees up when a boot ends; look again after a while in any case.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.idle_seconds):
                        await freed.wait()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _may_claim(self, running: set[asyncio.Task[None]]) -> bool:
        return not running or self.batch - len(running) >= self.refill

    async def boot_due(self) -> int:
        """Boot the due instances once, up to `batch` of them; returns how many were handled."""
        rows = await self._claim(self.batch)
        await asyncio.gather(*(self._boot_and_settle(row) for row in rows))
        await self._remove_settled()
        return len(rows)

    async def _claim(self, limit: int) -> list[asyncpg.Record]:
        table = self.boots.table
        await self._remove_settled()
        if time.monotonic() >= self._next_count:  # the gauge, not every idle pass of the loop
            PENDING.set(await self.pool.fetchval(f"SELECT count(*) FROM {table}"))
            self._next_count = time.monotonic() + 1.0
        return list(await self.pool.fetch(_CLAIM.format(table=table), limit))

    async def _boot_and_settle(self, row: asyncpg.Record) -> None:
        """One boot, then its row. A booted instance's row stays, under its lease, until
        `PendingBoots` applies the InstanceStarted the boot wrote (a boot answered 200 without
        writing one found the instance running, so that event is already in the store): the
        loop deleting it too cost a statement per pass that waited on the row locks of the
        provisioner's own projection, which deletes the same rows. A refused boot's row is
        removed here (with the others refused meanwhile, in one statement); a boot worth another
        try is due again later. A process that dies before either leaves the lease to expire,
        and the boot runs again (marking a running instance running changes nothing)."""
        try:
            outcome = await self._traced_boot(row)
        except Exception:  # a bug, not a failed call: keep booting the others, retry this one
            log.exception("boot of %s failed", row["instance_id"])
            outcome = "retry"
        _BOOTED[outcome].inc()
        if outcome == "booted":
            return  # its row stays leased until `PendingBoots` applies the InstanceStarted
        if outcome == "refused":
            self._settled.append(row["instance_id"])
            return
        try:
            await self.pool.execute(_BACK_OFF.format(table=self.boots.table), row["instance_id"])
        except (TimeoutError, OSError, asyncpg.PostgresError) as error:
            log.warning("boot of %s not deferred: %s", row["instance_id"], error)

    async def _remove_settled(self) -> None:
        settled, self._settled = self._settled, []
        if settled:
            await self.pool.execute(
                f"DELETE FROM {self.boots.table} WHERE instance_id = ANY($1::uuid[])", settled
            )

    async def _traced_boot(self, row: asyncpg.Record) -> str:
        # The boot continues the trace of the launch that asked for it.
        with span("provisioner.boot", context_of(row["traceparent"]), kind=SpanKind.INTERNAL):
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
