"""`append_group`: the appends of several commands in one statement and one commit, each command
all or nothing (events/groups.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# One entry per stream a command appends to; a command's entries are adjacent and share its
# number. `expectations`: -1 any, -2 exists, 0 no stream, n > 0 exactly n. The events of every
# entry follow each other in the event arrays, `event_counts[i]` of them for entry i.
#
# Commands apply in order, each in a block of its own (a subtransaction): a command whose
# expectation fails leaves nothing behind and answers one row naming that entry with NULLs; a
# command that holds answers a row per entry with its new version and last position. So the
# group's outcome is what the commands one after another would have had. The streams that exist
# are locked first, in one order, so two groups on two connections never deadlock.
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
    head_event int := 1;    -- its first event
    next_event int;         -- the next command's first event
    e1 int;                 -- the first event of entry i
    e2 int;                 -- its last
    moved int;
    position_now bigint;
    versions int[];
    positions bigint[];
BEGIN
    PERFORM 1 FROM streams s WHERE s.stream_id = ANY (stream_ids) ORDER BY s.stream_id FOR UPDATE;
    WHILE head <= entries LOOP
        tail := head;
        next_event := head_event + event_counts[head];
        WHILE tail < entries AND entry_commands[tail + 1] = entry_commands[head] LOOP
            tail := tail + 1;
            next_event := next_event + event_counts[tail];
        END LOOP;
        versions := '{}';
        positions := '{}';
        e1 := head_event;
        BEGIN
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
                    versions := NULL;
                    positions := ARRAY[i];
                    RAISE EXCEPTION 'stream % is not at the expected version', stream_ids[i]
                        USING ERRCODE = 'CN409';
                END IF;
                e2 := e1 + event_counts[i] - 1;
                WITH appended AS (
                    INSERT INTO events (stream_id, stream_version, event_id, type, schema_version,
                                        data, metadata, tenant_id)
                    SELECT stream_ids[i], moved - event_counts[i] + e.n, e.event_id, e.type,
                           e.schema_version, e.data, e.metadata, e.metadata ->> 'tenant_id'
                    FROM unnest(event_ids[e1:e2], event_types[e1:e2],
                                event_schema_versions[e1:e2], event_data[e1:e2],
                                event_metadata[e1:e2])
                         WITH ORDINALITY AS e (event_id, type, schema_version, data, metadata, n)
                    ORDER BY e.n
                    RETURNING position
                )
                SELECT max(position) INTO position_now FROM appended;
                versions := versions || moved;
                positions := positions || position_now;
                e1 := e2 + 1;
            END LOOP;
        EXCEPTION WHEN SQLSTATE 'CN409' THEN
            NULL;  -- the block's writes are undone; `positions` names the entry that failed
        END;
        IF versions IS NULL THEN
            entry := positions[1];
            appended_version := NULL;
            appended_position := NULL;
            RETURN NEXT;
        ELSE
            FOR i IN head..tail LOOP
                entry := i;
                appended_version := versions[i - head + 1];
                appended_position := positions[i - head + 1];
                RETURN NEXT;
            END LOOP;
        END IF;
        head := tail + 1;
        head_event := next_event;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(APPEND_GROUP)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION append_group(int[], text[], int[], int[], uuid[], text[], int[], jsonb[], "
        "jsonb[])"
    )
