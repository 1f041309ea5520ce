"""Prometheus of a local mesh: prometheus.yml, rendered from infra/prometheus/ with one scrape job
per kind of program, and its program. Flags: https://prometheus.io/docs/prometheus/latest/command-line/prometheus/
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from infra.launcher.health import HttpProbe
from infra.launcher.layout import HOST
from infra.launcher.programs import Priority, ProcessSpec, ScrapeTarget
from infra.launcher.templates import INFRA_DIR, render

if TYPE_CHECKING:
    from collections.abc import Iterable

    from infra.launcher.layout import MeshLayout

PROMETHEUS = Path("/usr/bin/prometheus")
TEMPLATE = "prometheus/prometheus.yml.template"
RULE_FILES = INFRA_DIR / "prometheus" / "rules" / "*.yml"


def render_prometheus_yml(layout: MeshLayout, specs: Iterable[ProcessSpec]) -> str:
    """prometheus.yml scraping every spec that has a `metrics` target, Prometheus included."""
    jobs: dict[str, list[tuple[str, ScrapeTarget]]] = defaultdict(list)
    for spec in specs:
        if spec.metrics is not None:
            jobs[spec.metrics.job].append((spec.name, spec.metrics))
    return render(
        TEMPLATE,
        mesh=json.dumps(layout.identifier),
        rule_files=json.dumps(str(RULE_FILES)),
        scrape_configs="\n".join(_scrape_config(job, jobs[job]) for job in sorted(jobs)),
    )


def write_prometheus_yml(layout: MeshLayout, specs: Iterable[ProcessSpec]) -> Path:
    directory = layout.paths.prometheus
    (directory / "data").mkdir(parents=True, exist_ok=True)
    path = directory / "prometheus.yml"
    path.write_text(render_prometheus_yml(layout, specs))
    return path


def prometheus_spec(layout: MeshLayout) -> ProcessSpec:
    port, directory = layout.ports.prometheus, layout.paths.prometheus
    return ProcessSpec(
        name="prometheus",
        command=(
            str(PROMETHEUS),
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address={HOST}:{port}",
            # POST /-/reload picks up edited rules without restarting the mesh.
            "--web.enable-lifecycle",
        ),
        ports=(port,),
        priority=Priority.MONITORING,
        probe=HttpProbe(f"http://{HOST}:{port}/-/ready"),
        metrics=ScrapeTarget(job="prometheus", port=port),
    )


def _scrape_config(job: str, members: list[tuple[str, ScrapeTarget]]) -> str:
    paths = {target.path for _, target in members}
    if len(paths) != 1:
        raise ValueError(f"scrape job {job!r} mixes metrics paths {sorted(paths)}")
    # JSON strings and flow mappings are valid YAML: no YAML library, no quoting mistakes.
    # `instance` is the program name (command-1), which dashboards show, rather than host:port.
    targets = "\n".join(
        f"      - targets: [{json.dumps(f'{HOST}:{target.port}')}]\n"
        f"        labels: {{instance: {json.dumps(name)}}}"
        for name, target in members
    )
    return (
        f"  - job_name: {json.dumps(job)}\n"
        f"    metrics_path: {json.dumps(paths.pop())}\n"
        f"    static_configs:\n{targets}"
    )
