"""`append_group` without a subtransaction per command: a command that fails puts back the stream
versions it moved, and the events of the commands that hold go in one INSERT at the end.

Migration 0003 ran each command in a block of its own (`BEGIN ... EXCEPTION`), which is a
subtransaction with an xid of its own, and inserted each entry's events in a statement of its own.
In a benchmark mesh under launches (wrk, 64 connections, six pairs alternating), this one took
PostgreSQL's CPU per launch from 0.72-0.81 to 0.67-0.71 ms (docs/BENCHMARKS.md, tenth session).
The outcome is the same: each command all or nothing, as if the commands ran one after another.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import importlib

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Arguments and answer as in 0003. A command's entries move their streams in order; when one
# finds its stream elsewhere than expected, the entries before it are put back, last first (a
# stream that one of them created is removed: a stream always holds an event, so version 0 means
# created here), and the command answers one row naming that entry with NULLs. The events of the
# entries that stayed are inserted together, in the order they were given.
APPEND_GROUP = """
CREATE OR REPLACE FUNCTION append_group(
    entry_commands int[], stream_ids text[], expectations int[], event_counts int[],
    event_ids uuid[], event_types text[], event_schema_versions int[], event_data jsonb[],
    event_metadata jsonb[]
) RETURNS TABLE (entry int, appended_version int, appended_position bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    entries int := cardinality(stream_ids);
    head int := 1;          -- the command's first entry
    tail int;               -- its last
    failed int;             -- the command's entry whose stream was not as expected
    moved int;
    bases int[] := array_fill(NULL::int, ARRAY[entries]);  -- version before entry i's events
    lasts int[] := array_fill(NULL::int, ARRAY[entries]);  -- after them; NULL: not appended
    failures int[] := '{}';
    event_streams text[] := '{}';
    event_versions int[] := '{}';                          -- NULL: the event is not appended
BEGIN
    PERFORM 1 FROM streams s WHERE s.stream_id = ANY (stream_ids) ORDER BY s.stream_id FOR UPDATE;
    WHILE head <= entries LOOP
        tail := head;
        WHILE tail < entries AND entry_commands[tail + 1] = entry_commands[head] LOOP
            tail := tail + 1;
        END LOOP;
        failed := NULL;
        FOR i IN head..tail LOOP
            moved := NULL;
            IF expectations[i] = -1 THEN
                INSERT INTO streams AS s (stream_id, version)
                VALUES (stream_ids[i], event_counts[i])
                ON CONFLICT (stream_id) DO UPDATE SET version = s.version + EXCLUDED.version
                RETURNING s.version INTO moved;
            ELSIF expectations[i] = 0 THEN
                INSERT INTO streams (stream_id, version) VALUES (stream_ids[i], event_counts[i])
                ON CONFLICT (stream_id) DO NOTHING
                RETURNING version INTO moved;
            ELSE
                UPDATE streams s SET version = s.version + event_counts[i]
                WHERE s.stream_id = stream_ids[i]
                  AND (expectations[i] = -2 OR s.version = expectations[i])
                RETURNING s.version INTO moved;
            END IF;
            IF moved IS NULL THEN
                failed := i;
                EXIT;
            END IF;
            bases[i] := moved - event_counts[i];
            lasts[i] := moved;
        END LOOP;
        IF failed IS NOT NULL THEN
            FOR i IN REVERSE failed - 1..head LOOP
                IF bases[i] = 0 THEN
                    DELETE FROM streams s WHERE s.stream_id = stream_ids[i];
                ELSE
                    UPDATE streams s SET version = bases[i] WHERE s.stream_id = stream_ids[i];
                END IF;
                bases[i] := NULL;
                lasts[i] := NULL;
            END LOOP;
            failures := failures || failed;
        END IF;
        head := tail + 1;
    END LOOP;
    FOR i IN 1..entries LOOP
        FOR k IN 1..event_counts[i] LOOP
            event_streams := event_streams || stream_ids[i];
            event_versions := event_versions || (bases[i] + k);
        END LOOP;
    END LOOP;
    RETURN QUERY
    WITH appended AS (
        INSERT INTO events (stream_id, stream_version, event_id, type, schema_version, data,
                            metadata, tenant_id)
        SELECT e.stream_id, e.version, e.event_id, e.type, e.schema_version, e.data, e.metadata,
               e.metadata ->> 'tenant_id'
        FROM unnest(event_streams, event_versions, event_ids, event_types,
                    event_schema_versions, event_data, event_metadata)
             WITH ORDINALITY AS e (stream_id, version, event_id, type, schema_version, data,
                                   metadata, n)
        WHERE e.version IS NOT NULL
        ORDER BY e.n
        RETURNING stream_id, stream_version, position
    )
    SELECT w.entry::int, w.last, a.position
    FROM unnest(stream_ids, lasts) WITH ORDINALITY AS w (stream_id, last, entry)
    JOIN appended a ON a.stream_id = w.stream_id AND a.stream_version = w.last
    UNION ALL
    SELECT f, NULL::int, NULL::bigint FROM unnest(failures) AS f
    ORDER BY 1;
END
$$
"""


def upgrade() -> None:
    op.execute(APPEND_GROUP)


def downgrade() -> None:
    previous = importlib.import_module("events.migrations.versions.0003_append_groups")
    op.execute(previous.APPEND_GROUP)
