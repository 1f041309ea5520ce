"""Idempotency records (written in the same transaction as the events) and aggregate snapshots.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE idempotency_keys (
            tenant_id    text        NOT NULL,
            key          text        NOT NULL,
            request_hash text        NOT NULL,
            status       integer     NOT NULL,
            answer       jsonb       NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, key)
        )
        """
    )
    op.execute("CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at)")
    op.execute(
        """
        CREATE TABLE snapshots (
            stream_id      text        PRIMARY KEY,
            stream_version integer     NOT NULL,
            schema_version integer     NOT NULL,
            state          jsonb       NOT NULL,
            taken_at       timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE snapshots")
    op.execute("DROP TABLE idempotency_keys")
