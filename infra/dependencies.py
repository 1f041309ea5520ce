"""Which errors mean "a dependency is down" (answered 503, counted by circuit breakers), as
opposed to errors about the request itself."""

from __future__ import annotations

import asyncpg

#: The database is unreachable, restarting or shutting down; the request may be retried.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    # A pooled connection that broke mid-operation while the server went away.
    asyncpg.InternalClientError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def connection_broke(error: BaseException) -> bool:
    """The connection broke or could not be opened, quickly: a read may be tried again at once
    on another connection of the pool. A timeout is not (trying again would only add to it;
    `TimeoutError` is an `OSError`)."""
    return isinstance(error, DATABASE_DOWN) and not isinstance(error, TimeoutError)
