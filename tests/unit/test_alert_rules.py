"""The alert rules in infra/prometheus/rules/, checked and unit-tested by promtool, and loaded by
the Prometheus config `cloudnet up` renders."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from infra.launcher.mesh import mesh_specs
from infra.launcher.prometheus import RULE_FILES, write_prometheus_yml
from tests.unit.test_launcher_configs import make_layout

PROMTOOL = Path("/usr/bin/promtool")
RULES_DIR = RULE_FILES.parent
RULES = sorted(RULES_DIR.glob("*.yml"))
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: `make system-deps` installs it (Debian: prometheus)")
    return subprocess.run(
        [str(PROMTOOL), *map(str, args)], capture_output=True, text=True, check=False
    )


def alert_names(path: Path) -> set[str]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_accepts_the_rules() -> None:
    assert RULES, f"no rule files in {RULES_DIR}"

    result = promtool("check", "rules", *RULES)

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    assert RULE_TESTS, f"no promtool tests in {RULES_DIR / 'tests'}"

    result = promtool("test", "rules", *RULE_TESTS)

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_the_mesh_needs_exist_and_the_key_ones_are_unit_tested() -> None:
    alerts = set().union(*(alert_names(path) for path in RULES))
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }

    assert {
        "CloudnetTargetDown",
        "CloudnetHighErrorRatio",
        "CloudnetHighLatency",
        "CloudnetProjectionLagging",
        "CloudnetRelayStalled",
        "CloudnetCircuitBreakerOpen",
        "CloudnetProjectionHalted",
        "CloudnetDeadLetters",
    } <= alerts
    assert {"CloudnetProjectionLagging", "CloudnetCircuitBreakerOpen"} <= tested
    assert tested <= alerts, f"tests of alerts that do not exist: {tested - alerts}"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
                    assert rule["annotations"]["summary"], rule["alert"]


def test_the_rendered_prometheus_config_loads_the_rules(tmp_path: Path) -> None:
    layout = make_layout(tmp_path)
    path = write_prometheus_yml(layout, mesh_specs(layout))

    result = promtool("check", "config", path)

    assert result.returncode == 0, result.stdout + result.stderr
    # promtool checks every rule file the config names; they must be ours, all of them.
    for rules in RULES:
        assert f"Checking {rules}" in result.stdout, result.stdout
    assert "SUCCESS: 0 rules found" not in result.stdout
