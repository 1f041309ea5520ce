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
