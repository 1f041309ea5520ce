"""Infrastructure: scrape targets, the host (node-exporter), PostgreSQL (postgres-exporter),
RabbitMQ (its prometheus plugin), nginx (nginx-exporter) and Prometheus itself."""

from __future__ import annotations

from typing import Any

from infra.grafana.model import Query, Row, dashboard, rate, stat, timeseries

#: Real filesystems only: no tmpfs, overlay layers or squashfs snaps.
FILESYSTEMS = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs"'


def infrastructure() -> dict[str, Any]:
    return dashboard(
        uid="cloudnet-infrastructure",
        title="cloudnet / Infrastructure",
        description="Host, PostgreSQL, RabbitMQ, nginx and Prometheus under the mesh.",
        tags=("infrastructure",),
        items=[
            Row("Scrape targets"),
            stat(
                "PostgreSQL",
                "1 while postgres-exporter reaches the database.",
                Query("min(pg_up)"),
                mappings={0: ("down", "red"), 1: ("up", "green")},
            ),
            stat(
                "nginx",
                "1 while nginx-exporter reaches the gateway's stub_status.",
                Query("min(nginx_up)"),
                mappings={0: ("down", "red"), 1: ("up", "green")},
            ),
            stat(
                "RabbitMQ",
                "RabbitMQ nodes Prometheus can scrape.",
                Query('sum(up{job="rabbitmq"})'),
                thresholds=((0, "red"), (1, "green")),
            ),
            timeseries(
                "Targets up by job",
                "Scrape targets Prometheus reaches, per job, against how many it has.",
                Query("sum by (job) (up)", "{{job}} up"),
                Query("count by (job) (up)", "{{job}} configured"),
            ),
            Row("Host"),
            timeseries(
                "CPU",
                "Share of all CPUs busy, by mode.",
                Query(
                    rate("node_cpu_seconds_total", "mode", selector='mode!="idle"')
                    + ' / scalar(count(node_cpu_seconds_total{mode="idle"}))',
                    "{{mode}}",
                ),
                unit="percentunit",
                stacked=True,
            ),
            timeseries(
                "Memory",
                "Memory in use (total minus available) and in total.",
                Query("sum(node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)", "used"),
                Query("sum(node_memory_MemTotal_bytes)", "total"),
                unit="bytes",
            ),
            timeseries(
                "Load",
                "Load averages against the number of CPUs.",
                Query("max(node_load1)", "1m"),
                Query("max(node_load5)", "5m"),
                Query('count(node_cpu_seconds_total{mode="idle"})', "CPUs"),
            ),
            timeseries(
                "Disk space used",
                "Share of each real filesystem in use.",
                Query(
                    f"1 - max by (mountpoint) (node_filesystem_avail_bytes{{{FILESYSTEMS}}} "
                    f"/ node_filesystem_size_bytes{{{FILESYSTEMS}}})",
                    "{{mountpoint}}",
                ),
                unit="percentunit",
                thresholds=((0.8, "orange"), (0.9, "red")),
            ),
            timeseries(
                "Disk I/O",
                "Bytes read and written per second, all disks.",
                Query(rate("node_disk_read_bytes_total"), "read"),
                Query(rate("node_disk_written_bytes_total"), "written"),
                unit="Bps",
            ),
            timeseries(
                "Network",
                "Bytes received and sent per second, all network interfaces.",
                Query(rate("node_network_receive_bytes_total"), "received"),
                Query(rate("node_network_transmit_bytes_total"), "sent"),
                unit="Bps",
            ),
            Row("PostgreSQL"),
            timeseries(
                "Connections by state",
                "Server connections per state (active, idle, idle in transaction).",
                Query("sum by (state) (pg_stat_activity_count)", "{{state}}"),
                Query("max(pg_settings_max_connections)", "max_connections"),
            ),
            timeseries(
                "Transactions/s",
                "Commits and rollbacks per second, all databases.",
                Query(rate("pg_stat_database_xact_commit"), "commits"),
                Query(rate("pg_stat_database_xact_rollback"), "rollbacks"),
                unit="ops",
            ),
            timeseries(
                "Rows/s",
                "Rows inserted, updated, deleted and fetched per second, all databases.",
                *(
                    Query(rate(f"pg_stat_database_tup_{kind}"), kind)
                    for kind in ("inserted", "updated", "deleted", "fetched")
                ),
                unit="ops",
            ),
            timeseries(
                "Cache hit ratio and deadlocks",
                "Share of block reads served from shared buffers; deadlocks per second.",
                Query(
                    f"{rate('pg_stat_database_blks_hit')} / ({rate('pg_stat_database_blks_hit')} "
                    f"+ {rate('pg_stat_database_blks_read')})",
                    "cache hit ratio",
                ),
                Query(rate("pg_stat_database_deadlocks"), "deadlocks/s"),
            ),
            timeseries(
                "Database size",
                "Size of each database on disk.",
                Query("max by (datname) (pg_database_size_bytes)", "{{datname}}"),
                unit="bytes",
            ),
            Row("RabbitMQ"),
            timeseries(
                "Connections, channels, consumers",
                "Broker clients: relays publish, projectors consume.",
                Query("sum(rabbitmq_connections)", "connections"),
                Query("sum(rabbitmq_channels)", "channels"),
                Query("sum(rabbitmq_consumers)", "consumers"),
            ),
            timeseries(
                "Broker memory and disk",
                "Resident memory against the high watermark; free disk.",
                Query("sum(rabbitmq_process_resident_memory_bytes)", "memory"),
                Query("sum(rabbitmq_resident_memory_limit_bytes)", "memory limit"),
                Query("min(rabbitmq_disk_space_available_bytes)", "disk free"),
                unit="bytes",
            ),
            Row("nginx gateway"),
            timeseries(
                "Gateway requests/s",
                "Requests nginx handled (all upstreams, including rejected ones).",
                Query(rate("nginx_http_requests_total"), "requests"),
                unit="reqps",
            ),
            timeseries(
                "Gateway connections",
                "Client connections by state.",
                *(
                    Query(f"sum(nginx_connections_{state})", state)
                    for state in ("active", "reading", "writing", "waiting")
                ),
            ),
            Row("Prometheus"),
            timeseries(
                "Scrape duration by job",
                "Longest scrape per job (the timeout is 4 s).",
                Query("max by (job) (scrape_duration_seconds)", "{{job}}"),
                unit="s",
            ),
            timeseries(
                "Rule evaluation",
                "Alert rule evaluations failing, and how long a rule group takes.",
                Query(rate("prometheus_rule_evaluation_failures_total"), "failures/s"),
                Query("max(prometheus_rule_group_last_duration_seconds)", "slowest group (s)"),
            ),
        ],
    )
