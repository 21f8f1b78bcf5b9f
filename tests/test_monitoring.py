"""The monitoring files shipped in deploy/monitoring/ (alert rules, a Grafana dashboard, an example
Prometheus configuration) load, and every metric they name is one the code exports, with the
labels it has: the names are read from real scrapes of the cloud's `/metrics` (a migrated
database) and of a concentrator's endpoint, never from a list kept here. With `promtool` on
PATH (Debian's `prometheus` package) the rules and the configuration are checked by it too,
and the rules' unit tests (alerts_test.yml) run; without it those checks are skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloud.app import create_app
from cloud.db.engine import make_engine, upgrade
from cloud.metrics.endpoint import MetricsEndpoint
from demo.site import write_demo_site
from edge.metrics import EdgeMetrics, take_snapshot
from edge.runtime.boot import boot
from edge.runtime.clock import ManualClock
from edge.runtime.pace import CyclePace
from edge.site import load_site
from ledger.chain import NodeKey
from tests.edge.runtime.conftest import START

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMETHEUS = MONITORING / "prometheus.yml"
TOKEN = "monitoring-test-token-0123456789"
METRIC = re.compile(r"\b(voltbook_[a-zA-Z0-9_]+)\b(\{[^}]*\})?")
LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
DURATION = re.compile(r"^\d+[smhdwy]$")
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {"job", "instance"}

Exported = dict[str, set[str]]  # series name → its label names


def exported_by(text: str) -> Exported:
    found: Exported = {}
    for family in text_string_to_metric_families(text):
        kind = family.type
        series = {
            "counter": [f"{family.name}_total"],
            "histogram": [f"{family.name}_{s}" for s in ("bucket", "sum", "count")],
        }.get(kind, [family.name])
        labels = {name for sample in family.samples for name in sample.labels}
        for name in series:
            found.setdefault(name, set()).update(labels | TARGET_LABELS)
        for sample in family.samples:  # `_created` and the like, as scraped
            found.setdefault(sample.name, set()).update(set(sample.labels) | TARGET_LABELS)
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Every series the cloud and a concentrator export, with their labels, from scrapes."""
    where = tmp_path_factory.mktemp("monitoring")
    engine = make_engine(f"sqlite:///{where / 'cloud.db'}")
    upgrade(engine)
    try:
        app = create_app(engine, NodeKey.from_seed(b"m" * 32),
                         metrics=MetricsEndpoint(TOKEN, where / "drill.json"))  # fmt: skip
        with TestClient(app) as client:
            client.get("/health")  # one request: the latency series have their labels
            answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
        found = exported_by(answer.text)
    finally:
        engine.dispose()
    files = write_demo_site(where / "site", 2, tariff="flat")
    toml = files.site_toml
    toml.write_text(toml.read_text().replace("[site]\n", "[site]\nstore_limit_mb = 64\n", 1))
    site = load_site(toml)
    assert site.settings.store_limit_bytes is not None
    booted = boot(site, clock=ManualClock(START))
    try:
        booted.runtime.run_cycle()
        pace = CyclePace(900.0)
        pace.record(3.0, START, failed=False, overrun=False)
        metrics = EdgeMetrics(site, pace, take_snapshot(site, booted.runtime.store))
    finally:
        booted.close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    for name, labels in exported_by(generate_latest(registry).decode()).items():
        found.setdefault(name, set()).update(labels)
    return found


def named_metrics(expr: str) -> list[tuple[str, set[str]]]:
    """Each `voltbook_…` series an expression selects, with the labels its matchers name."""
    return [
        (match.group(1), set(LABEL.findall(match.group(2) or "")))
        for match in METRIC.finditer(expr)
    ]


def check_expression(expr: str, exported: Exported) -> list[str]:
    problems = []
    selected = named_metrics(expr)
    if not selected:
        problems.append(f"names no voltbook metric: {expr}")
    for name, labels in selected:
        if name not in exported:
            problems.append(f"{name} is not exported")
        elif labels - exported[name] - {"le"}:
            problems.append(f"{name} has no label {sorted(labels - exported[name])}")
    by = [set(re.split(r"\s*,\s*", group.strip())) for group in re.findall(r"by \(([^)]*)\)", expr)]
    known = set().union(*(exported.get(name, set()) for name, _ in selected)) | {"le"}
    for labels in by:
        if labels - known:
            problems.append(f"grouped by unknown labels {sorted(labels - known)}: {expr}")
    return problems


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_scrapes_cover_what_the_issue_asks(exported: Exported) -> None:
    for name in (
        "voltbook_ingest_lag_seconds", "voltbook_ingest_batches_refused_total",
        "voltbook_commands", "voltbook_payment_orders",
        "voltbook_api_request_duration_seconds_bucket",
        "voltbook_restore_drill_success", "voltbook_restore_drill_last_run_timestamp_seconds",
        "voltbook_edge_cycle_last_duration_seconds", "voltbook_edge_poll_interval_seconds",
        "voltbook_edge_bus_read_success_ratio", "voltbook_edge_outbox_items",
        "voltbook_edge_clock_held", "voltbook_edge_store_bytes",
    ):  # fmt: skip
        assert name in exported, name
    assert "route" in exported["voltbook_api_request_duration_seconds_bucket"]
    assert "bus" in exported["voltbook_edge_bus_read_success_ratio"]


def test_alert_rules_load_and_name_only_exported_metrics(exported: Exported) -> None:
    document = yaml.safe_load(RULES.read_text())
    assert {group["name"] for group in document["groups"]} == {"voltbook-cloud", "voltbook-edge"}
    found = rules()
    names = [rule["alert"] for rule in found]
    assert len(names) == len(set(names)), "two alerts share a name"
    problems = []
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule  # type: ignore[index]
        assert rule["annotations"]["summary"], rule  # type: ignore[index]
        assert "for" not in rule or DURATION.match(str(rule["for"])), rule
        problems += [f"{rule['alert']}: {p}" for p in check_expression(str(rule["expr"]), exported)]
    assert not problems, "\n".join(problems)
    covered = " ".join(str(rule["expr"]) for rule in found)
    for wanted in ("voltbook_ingest_lag_seconds", "voltbook_ingest_batches_refused_total",
                   "voltbook_commands_oldest_seconds", "voltbook_payment_paid_uncredited",
                   "voltbook_restore_drill_success", "voltbook_edge_cycle_overruns_total",
                   "voltbook_edge_bus_read_success_low", "voltbook_edge_outbox_items",
                   "voltbook_edge_clock_held"):  # fmt: skip
        assert wanted in covered, f"no alert on {wanted}"


def test_the_dashboard_loads_and_names_only_exported_metrics(exported: Exported) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    problems = []
    for panel in panels:
        assert panel["datasource"]["uid"].strip("${}") in variables, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            problems += [
                f"{panel['title']}: {p}" for p in check_expression(target["expr"], exported)
            ]
    assert not problems, "\n".join(problems)


def test_the_example_prometheus_configuration_loads() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == [RULES.name]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["voltbook-cloud"]["authorization"]["type"] == "Bearer"


def test_a_mistyped_metric_would_be_caught(exported: Exported) -> None:
    """The check can fail: a name or a label the code does not export is reported."""
    assert check_expression("voltbook_ingest_lag_second > 1", exported)
    assert check_expression('voltbook_commands{status="pending"} > 1', exported)
    assert check_expression("sum by (shop) (voltbook_payment_orders)", exported)
    assert check_expression("up == 0", exported)
    assert not check_expression('sum by (state) (voltbook_commands{state="pending"})', exported)


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH (apt-get install prometheus)")
@pytest.mark.parametrize(
    "command",
    [["check", "rules", "alerts.yml"], ["check", "config", "--syntax-only", "prometheus.yml"],
     ["test", "rules", "alerts_test.yml"]],
)  # fmt: skip
def test_promtool_accepts_the_files(command: list[str]) -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *command], cwd=MONITORING, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
