#!/bin/sh
# The streaming replica the query services read from (READ_DATABASE_URL): cloned from the
# primary on its first start (pg_basebackup writes standby.signal and primary_conninfo), then
# a hot standby. Runs as the postgres user.
# Reference: https://www.postgresql.org/docs/15/app-pgbasebackup.html
set -eu

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    PGPASSWORD="$POSTGRES_REPLICATION_PASSWORD" pg_basebackup \
        --host=postgres --username=replicator --pgdata="$PGDATA" \
        --slot=replica_1 --wal-method=stream --write-recovery-conf --checkpoint=fast
    chmod 0700 "$PGDATA"
fi

# hot_standby_feedback: the primary's vacuum waits for the replica's queries instead of
# cancelling them. A standby refuses to recover with max_connections (and the other
# parameters PostgreSQL checks) below the primary's: compose.yaml starts the primary with 200.
exec postgres -c hot_standby=on -c hot_standby_feedback=on -c max_connections=200
