"""`python -m infra.grafana`: write the dashboards to infra/grafana/dashboards/ (commit them)."""

from __future__ import annotations

from infra.grafana.catalog import DASHBOARDS_DIR, rendered

for name, text in rendered().items():
    (DASHBOARDS_DIR / name).write_text(text)
    print(DASHBOARDS_DIR / name)
