"""What a read model is to the runtime: versioned tables, a view, and one handler per event.

The live projector and the replay tool run the same `Projection`, each against its own
table version, so a read model has exactly one definition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from asyncpg import Connection
    from asyncpg.pool import PoolConnectionProxy

    from events import RecordedEvent

    DbConnection: TypeAlias = Connection | PoolConnectionProxy[Any]

#: One SQL statement and its arguments.
Statement: TypeAlias = tuple[str, tuple[Any, ...]]


#: The statements `insert` made, with their table and columns.
INSERTS: dict[str, tuple[str, tuple[str, ...]]] = {}


def insert(table: str, columns: tuple[str, ...]) -> str:
    """`INSERT INTO table (columns) VALUES ($1, ...)`: a statement whose arguments are its
    columns' values, in order. A rebuild loading a fresh table sends a batch's rows of such a
    statement as one binary COPY instead of one INSERT each (`projectors.runtime`)."""
    values = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"
    INSERTS[statement] = (table, columns)
    return statement


#: An UPDATE of one row, as a function: that row's INSERT arguments before it and its own
#: arguments (the row's key first) -> the INSERT arguments of the row after it.
Fold: TypeAlias = Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]

#: The statements `foldable` registered, with their table and fold.
FOLDS: dict[str, tuple[str, Fold]] = {}


def foldable(table: str, statement: str, fold: Fold) -> str:
    """Register `statement`, which changes only the row of `table` keyed by its first argument,
    with `fold`, what it does to the values of an `insert` of that row. A rebuild whose batch
    inserts a row and then changes it sends the row as it ends, in its COPY, instead of the
    INSERT and then an UPDATE per change (`projectors.runtime`)."""
    FOLDS[statement] = (table, fold)
    return statement


class Projection(Protocol):
    """A read model built from events. `name` is the plain (view) name without `rm_`."""

    name: str
    version: int

    def tables(self) -> list[str]:
        """This version's table names (each row has an `id` key, for diffs)."""
        ...

    def create_tables(self) -> list[str]:
        """DDL for this version's tables, without secondary indexes (`IF NOT EXISTS`)."""
        ...

    def create_indexes(self) -> list[str]:
        """DDL for the secondary indexes (a rebuild adds them after the bulk load)."""
        ...

    def create_view(self) -> list[str]:
        """DDL that points the plain-named view(s) at this version's tables."""
        ...

    def statements(self, event: RecordedEvent) -> list[Statement]:
        """The SQL that applies one event (none for types it ignores). Pure: the runtime runs
        them in the batch's transaction, many at once (pipelined `executemany`). Each statement
        must touch only the row keyed by its first argument: changes to one row keep their
        order, changes to different rows may be reordered within a batch."""
        ...


def checkpoint_key(projection: Projection) -> str:
    """The checkpoint row of one version of a projection, e.g. `networks_v1`."""
    return f"{projection.name}_v{projection.version}"


#: The columns every read-model row carries: when it began and last changed, the version of its
#: aggregate stream, and the global position of the last event applied to it.
TRACKING_COLUMNS = """
                created_at    timestamptz NOT NULL,
                updated_at    timestamptz NOT NULL,
                version       integer     NOT NULL,
                last_position bigint      NOT NULL"""
#: Their names, in that order.
TRACKING_NAMES = ("created_at", "updated_at", "version", "last_position")


class VersionedTable:
    """What a read model kept in one table shares: its versioned name (`rm_<name>_v<n>`)."""

    name: str
    table_prefix = "rm_"

    def __init__(self, version: int = 1) -> None:
        self.version = version
        self.table = f"{self.table_prefix}{self.name}_v{version}"

    def tables(self) -> list[str]:
        return [self.table]

    def create_view(self) -> list[str]:
        """The plain-named view (`rm_<name>`) the query service reads, on this version."""
        return [
            f"CREATE OR REPLACE VIEW {self.table_prefix}{self.name} AS SELECT * FROM {self.table}"
        ]
