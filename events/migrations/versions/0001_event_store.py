"""The event store: events in commit order, stream versions, relay checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            stream_id       text        NOT NULL,
            stream_version  integer     NOT NULL CHECK (stream_version > 0),
            event_id        uuid        NOT NULL UNIQUE,
            type            text        NOT NULL,
            schema_version  integer     NOT NULL DEFAULT 1,
            data            jsonb       NOT NULL,
            metadata        jsonb       NOT NULL DEFAULT '{}',
            tenant_id       text,
            recorded_at     timestamptz NOT NULL DEFAULT now(),
            transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
            UNIQUE (stream_id, stream_version)
        )
        """
    )
    # Commit-order reads walk this index; tenant feeds walk the second.
    op.execute("CREATE INDEX events_commit_order ON events (transaction_id, position)")
    op.execute("CREATE INDEX events_tenant ON events (tenant_id, position)")
    # One row per stream: appends lock only their own streams' rows, never the table.
    op.execute(
        """
        CREATE TABLE streams (
            stream_id text    PRIMARY KEY,
            version   integer NOT NULL CHECK (version >= 0)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE relay_checkpoints (
            relay          text        PRIMARY KEY,
            transaction_id bigint      NOT NULL,
            position       bigint      NOT NULL,
            updated_at     timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE relay_checkpoints")
    op.execute("DROP TABLE streams")
    op.execute("DROP TABLE events")
