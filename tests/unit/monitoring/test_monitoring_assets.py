"""The shipped monitoring assets: promtool accepts the rules and their unit tests pass, the
Kubernetes wrappers are exactly what the renderer produces, and the dashboard only queries
metrics the agent exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from device_plugin.exporter import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "monitoring"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="needs promtool (Debian prometheus, hack/ensure-debs.sh)",
)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    res = subprocess.run(
        ["promtool", "check", "rules", str(MONITORING / "rules" / "naaice.rules.yaml")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 9 rules found" in res.stdout


@needs_promtool
def test_the_alert_unit_tests_pass_under_promtool() -> None:
    res = subprocess.run(
        ["promtool", "test", "rules", "naaice.rules.test.yaml"],
        check=False,
        capture_output=True,
        text=True,
        cwd=MONITORING / "rules",
    )
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: [{name: x, rules: [{alert: A, expr: 'rate(naa_x[5m]'}]}]\n")
    res = subprocess.run(["promtool", "check", "rules", str(bad)], check=False, capture_output=True)
    assert res.returncode != 0


def test_the_prometheusrule_and_dashboard_configmap_match_their_sources(tmp_path: Path) -> None:
    before = {
        p: (MONITORING / p).read_text()
        for p in ("prometheusrule.yaml", "grafana-dashboard-configmap.yaml")
    }
    spec = {"rules": MONITORING / "rules" / "naaice.rules.yaml"}
    rule = yaml.safe_load(before["prometheusrule.yaml"])
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(spec["rules"].read_text())["groups"]
    cm = yaml.safe_load(before["grafana-dashboard-configmap.yaml"])
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads((MONITORING / "dashboards" / "naaice-energy.json").read_text())
    assert json.loads(cm["data"]["naaice-energy.json"]) == board
    res = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "render-monitoring.py")],
        check=False,
        capture_output=True,
    )
    assert res.returncode == 0, res.stderr
    after = {p: (MONITORING / p).read_text() for p in before}
    assert after == before, "run hack/render-monitoring.py and commit the result"


def test_the_dashboard_has_a_fixed_uid_a_datasource_variable_and_energy_units() -> None:
    board = json.loads((MONITORING / "dashboards" / "naaice-energy.json").read_text())
    assert board["uid"] == "naaice-energy"
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "device", "baseline_watts"} <= names
    units = {
        p["fieldConfig"]["defaults"].get("unit") for p in board["panels"] if "fieldConfig" in p
    }
    assert {"joule", "watt"} <= units
    titles = {p["title"] for p in board["panels"]}
    assert {"Power per NAA", "Energy per NAAJob", "Energy per epoch"} <= titles
    assert any(t.startswith("FPGA vs baseline") for t in titles)


def test_every_dashboard_and_rule_query_uses_only_exported_metric_names() -> None:
    board = json.loads((MONITORING / "dashboards" / "naaice-energy.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MONITORING / "rules" / "naaice.rules.yaml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    known = set(METRIC_NAMES) | {"ALERTS"}
    used = set()
    for expr in exprs:
        used |= set(re.findall(r"\b(naa_[a-z_]+)\b", expr))
    assert used, "no metric names found"
    assert used <= known, f"unknown metrics: {sorted(used - known)}"
