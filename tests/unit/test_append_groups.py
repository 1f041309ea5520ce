"""How a group's failure reaches its commands (events/groups.py), with a stand-in pool: a refusal
by PostgreSQL means nothing committed, so each command runs again alone; a lost connection
leaves the outcome unknown, so none is run again (the real database: tests/integration/
test_append_groups.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from events import AppendResult, ExpectedVersion, NewEvent
from events.groups import Append, AppendGroups


class FailingPool:
    """Every statement sent to it (here: only a group's) fails with `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.statements = error, 0

    async def fetch(self, query: str, *arguments: Any) -> list[Any]:
        self.statements += 1
        raise self.error


async def commands_after(error: BaseException) -> tuple[list[Any], list[Append]]:
    """Three commands: the first alone (holding the only connection), the others waiting, then
    one group for those two, whose one statement fails with `error`."""
    ran_alone: list[Append] = []
    first_done = asyncio.Event()

    async def alone(append: Append) -> AppendResult:
        ran_alone.append(append)
        if len(ran_alone) == 1:
            await first_done.wait()
        return AppendResult(stream_version=1, position=len(ran_alone))

    pool = FailingPool(error)
    groups = AppendGroups(pool, 1, alone, committed=lambda: None)

    def command(stream_id: str) -> Any:
        event = NewEvent("Tested", {})
        return groups.append([(stream_id, [event], ExpectedVersion.NO_STREAM)])

    first = asyncio.ensure_future(command("first"))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(command(s)) for s in ("second", "third")]
    await asyncio.sleep(0)
    first_done.set()
    outcomes = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert pool.statements == 1  # the two waiting commands went as one group
    return outcomes, ran_alone


async def test_a_group_postgresql_refused_runs_each_command_alone() -> None:
    outcomes, ran_alone = await commands_after(asyncpg.UniqueViolationError("duplicate"))
    assert [append[0] for append in ran_alone] == ["first", "second", "third"]
    assert all(isinstance(outcome, list) for outcome in outcomes)


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), TimeoutError()])
async def test_a_group_whose_outcome_is_unknown_is_not_run_again(error: BaseException) -> None:
    outcomes, ran_alone = await commands_after(error)
    assert [append[0] for append in ran_alone] == ["first"]
    assert isinstance(outcomes[0], list)
    assert outcomes[1:] == [error, error]
