"""The alerts and the dashboard stay true to `GET /metrics`: every PromQL expression of
deploy/prometheus/alerts.yml, of its PrometheusRule twin in deploy/k8s/base and of the
Grafana dashboard parses (`promql-parser`) and names only series the orchestrator exports,
with labels they have; the two rule files hold the same groups; every alert has a severity,
a summary and a runbook entry in deploy/README.md; the dashboard has Grafana's shape and a
panel for every Swarm series. Where `promtool` is installed (Debian's `prometheus` package),
it checks the rules and the dashboard's expressions too, and runs the alerts' unit tests
(tests/deploy/alerts_test.yml: each alert fires when it should, and not before)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser  # type: ignore[import-untyped]
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE = ROOT / "deploy" / "k8s" / "base" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "swarm-dashboard.json"
RUNBOOK = ROOT / "deploy" / "README.md"
UNIT_TESTS = Path(__file__).parent / "alerts_test.yml"
SCRAPE_LABELS = {"instance", "job"}
"""Labels Prometheus adds to every scraped series."""
SEVERITIES = {"critical", "warning", "info"}

Catalogue = dict[str, set[str]]
"""Every series name /metrics serves, with its label names."""


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panel_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def _instrumented() -> Catalogue:
    """The counters and histograms of `observability.metrics`, children or not."""
    found: Catalogue = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, labels = metric._name, set(metric._labelnames)
        if isinstance(metric, Counter):
            found[f"{name}_total"] = labels
        elif isinstance(metric, Histogram):
            found[f"{name}_bucket"] = labels | {"le"}
            found[f"{name}_count"] = found[f"{name}_sum"] = labels
        elif isinstance(metric, Gauge):
            found[name] = labels
    return found


@pytest.fixture
async def exported(state: AppState) -> Catalogue:
    """What a scrape serves: the instrumented series, the process's, and the figures read
    from PostgreSQL and Redis (their families carry their label names even when empty)."""
    found = _instrumented()
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    for family in await state.gauges.read():
        suffix = "_total" if family.type == "counter" else ""
        found[family.name + suffix] = set(getattr(family, "_labelnames", ()))
    return found


def _selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(series name, label names matched) of every selector of a PromQL expression."""
    found: list[tuple[str, set[str]]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node.name, {m.name for m in node.matchers.matchers}))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _wrong_names(expr: str, exported: Catalogue) -> list[str]:
    wrong = []
    for name, labels in _selectors(expr):
        if name not in exported:
            wrong.append(f"{name} is not exported")
        elif unknown := labels - exported[name] - SCRAPE_LABELS:
            wrong.append(f"{name} has no label {sorted(unknown)}")
    return wrong


async def test_every_alert_names_only_exported_series(exported: Catalogue) -> None:
    wrong = {rule["alert"]: _wrong_names(rule["expr"], exported) for rule in _alerts()}
    assert not {k: v for k, v in wrong.items() if v}, wrong


async def test_every_panel_names_only_exported_series(exported: Catalogue) -> None:
    wrong = {f"{title}: {expr}": _wrong_names(expr, exported) for title, expr in _panel_exprs()}
    assert not {k: v for k, v in wrong.items() if v}, wrong


async def test_the_dashboard_shows_every_swarm_series(exported: Catalogue) -> None:
    shown = {name for _, expr in _panel_exprs() for name, _ in _selectors(expr)}
    families = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in shown}
    missing = sorted(
        name
        for name in exported
        if name.startswith("swarm_")
        and not name.endswith("_created")
        and name not in shown
        and re.sub(r"_(bucket|count|sum|total)$", "", name) not in families
    )
    assert missing == []


def test_the_checker_finds_a_wrong_name_and_a_wrong_label() -> None:
    exported = {"swarm_tasks": {"agent", "status"}}
    assert _wrong_names('max by (agent) (swarm_tasks{status="queued"})', exported) == []
    assert _wrong_names('swarm_task{status="queued"}', exported) == ["swarm_task is not exported"]
    assert _wrong_names('swarm_tasks{state="queued"}', exported) == [
        "swarm_tasks has no label ['state']"
    ]
    with pytest.raises(ValueError):
        _selectors("sum(rate(swarm_tasks[5m])")


def test_every_alert_says_how_bad_what_and_where_its_runbook_is() -> None:
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names))
    runbook = RUNBOOK.read_text() if RUNBOOK.exists() else ""
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    for rule in _alerts():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        anchor = notes["runbook"].removeprefix("deploy/README.md#")
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in headings, f"no runbook section for {rule['alert']} in {RUNBOOK}"


def test_the_prometheus_rule_holds_the_same_alerts() -> None:
    rule = yaml.safe_load(RULE.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"], (
        f"copy the groups of {ALERTS} into {RULE}'s spec"
    )
    kustomization = yaml.safe_load((RULE.parent / "kustomization.yaml").read_text())
    assert RULE.name in kustomization["resources"]


def test_the_dashboard_has_grafanas_shape() -> None:
    board = _dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    [source] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["w"] > 0 and box["x"] + box["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in
                 range(box["y"], box["y"] + box["h"])}  # fmt: skip
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "bargauge", "table"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${" + source["name"] + "}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


# -- with promtool ---------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)"
)


def _promtool(*args: str, cwd: Path | None = None) -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_accepts_the_rules_and_the_dashboards_queries(tmp_path: Path) -> None:
    _promtool("check", "rules", str(ALERTS))
    recording = [
        {"record": f"dashboard:panel_{n}", "expr": expr}
        for n, (_, expr) in enumerate(_panel_exprs())
    ]
    queries = tmp_path / "dashboard.yml"
    queries.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    _promtool("check", "rules", str(queries))


@needs_promtool
def test_the_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """The unit tests of alerts_test.yml, on the rules without their annotations (what the
    tests compare is which alerts fire, with which labels)."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    tested = {
        case["alertname"]
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert tested == {rule["alert"] for rule in _alerts()}, "every alert has a unit test"
