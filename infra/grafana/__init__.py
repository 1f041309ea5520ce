"""Grafana dashboards as code: `python -m infra.grafana` writes infra/grafana/dashboards/*.json,
which Grafana's file provider (provisioning/dashboards/cloudnet.yml) loads in the compose mesh."""
