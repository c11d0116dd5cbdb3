"""Alert rules, the PrometheusRule and ServiceMonitor, the Grafana dashboard: checked by
promtool (Debian's prometheus package) and against the metrics the daemon registers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import CollectorRegistry

from modelsync.metrics import Metrics
from tests.helpers import REPO

PROM = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "modelsync-dashboard.json"
PROMTOOL = shutil.which("promtool")


def _exported() -> set[str]:
    """Every series name the daemon's registry can expose."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def _metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\bmodelsync_[a-z_]+", expr))


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (.ci/run installs prometheus)")
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    for args in (
        ("check", "rules", "modelsync-rules.yml"),
        ("test", "rules", "modelsync-rules.test.yml"),
    ):
        done = subprocess.run([str(PROMTOOL), *args], cwd=PROM, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout


def test_rules_use_only_metrics_the_daemon_exports_and_have_runbooks() -> None:
    rules = yaml.safe_load((PROM / "modelsync-rules.yml").read_text())
    exported = _exported()
    runbooks = (REPO / "docs" / "troubleshooting.md").read_text()
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert {r["alert"] for r in alerts} >= {
        "ModelsyncModelStale",
        "ModelsyncRolledBack",
        "ModelsyncRollbackFailed",
        "ModelsyncSyncFailing",
        "ModelsyncNoSuccessfulPass",
        "ModelsyncCanaryHalted",
    }
    for rule in alerts:
        assert _metrics_in(rule["expr"]) <= exported, rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"## {rule['alert']}" in runbooks and anchor == rule["alert"].lower()


def test_operator_manifests_hold_the_same_rules_and_scrape_the_admin_port() -> None:
    rules = yaml.safe_load((PROM / "modelsync-rules.yml").read_text())
    operator = yaml.safe_load((PROM / "prometheusrule.yaml").read_text())
    assert operator["kind"] == "PrometheusRule" and operator["spec"] == rules
    service, monitor = list(yaml.safe_load_all((PROM / "servicemonitor.yaml").read_text()))
    assert monitor["kind"] == "ServiceMonitor"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    deployment = (REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    assert "{ name: admin, containerPort: 8686 }" in deployment


def test_dashboard_imports_and_charts_what_an_operator_needs() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = set().union(*(_metrics_in(e) for e in exprs))
    assert used <= _exported(), used - _exported()
    assert used >= {
        "modelsync_active_version",
        "modelsync_revision_age_seconds",
        "modelsync_max_age_seconds",
        "modelsync_sync_total",
        "modelsync_rollbacks_total",
        "modelsync_download_bytes_total",
        "modelsync_sync_duration_seconds_bucket",
        "modelsync_rollback_failed",
    }
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
