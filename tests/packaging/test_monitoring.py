"""Metrics stay off the public path, the ServiceMonitor scrapes pods on their
metrics ports, and the PrometheusRule and dashboard objects carry the files
in monitoring/ as they are, read through the chart's symlink."""

import json
import os
import pathlib
import shutil

import yaml

from conftest import CHART, REPO, find, labels_match, one, render

MONITORING = REPO / "monitoring"
TOGGLES = (
    "--set", "metrics.serviceMonitor.enabled=true",
    "--set", "metrics.prometheusRule.enabled=true",
    "--set", "metrics.grafanaDashboards.enabled=true",
)


def pods_with_port(objects, selector, port_name):
    """Workloads whose pods a Service selects and that name a container port."""
    found = []
    for o in find(objects, "Deployment") + find(objects, "StatefulSet"):
        template = o["spec"]["template"]
        if labels_match(selector, template["metadata"]["labels"]):
            ports = [p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
            assert port_name in ports, f"{o['metadata']['name']} has no {port_name} port"
            found.append(o["metadata"]["name"])
    return found


def test_service_monitor_scrapes_app_and_controller_pods_on_metrics_ports():
    objects = render(*TOGGLES)
    monitor = one(objects, "ServiceMonitor", "kadi")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kadi"]}
    selected = [s for s in find(objects, "Service")
                if labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in selected} == {"kadi-metrics", "kadi-controller-metrics"}
    workloads = set()
    for service in selected:
        # Headless: each endpoint is a pod, so every replica is its own target.
        assert service["spec"]["clusterIP"] == "None"
        assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("metrics", "metrics")]
        assert service["metadata"]["labels"]["kadi.dev/job"] in ("kadi", "kadi-controller")
        workloads.update(pods_with_port(objects, service["spec"]["selector"], "metrics"))
    assert workloads == {"kadi", "kadi-controller"}


def test_public_service_and_ingress_never_expose_metrics(rendered):
    for objects in rendered.values():
        service = one(objects, "Service", "kadi")
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
        for ingress in find(objects, "Ingress"):
            for rule in ingress["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    assert backend == {"name": "kadi", "port": {"name": "http"}}


def test_chart_reads_monitoring_through_a_symlink_to_the_repository_folder():
    link = CHART / "files" / "monitoring"
    assert link.is_symlink()
    assert os.readlink(link) == "../../../monitoring"
    assert link.resolve() == MONITORING.resolve()


def rule_files(root):
    return sorted((root / "prometheus" / "rules").glob("*.yml"))


def dashboard_files(root):
    return sorted((root / "grafana" / "dashboards").glob("*.json"))


def assert_objects_carry(objects, root):
    """PrometheusRules and dashboard ConfigMaps equal the files under root."""
    rules = {r["metadata"]["annotations"]["kadi.dev/source"]: r for r in find(objects, "PrometheusRule")}
    expected = {f"monitoring/prometheus/rules/{f.name}": f for f in rule_files(root)}
    assert rules.keys() == expected.keys()
    for source, path in expected.items():
        assert rules[source]["spec"]["groups"] == yaml.safe_load(path.read_text())["groups"]
    dashboards = {c["metadata"]["annotations"]["kadi.dev/source"]: c for c in find(objects, "ConfigMap")
                  if "kadi.dev/source" in c["metadata"].get("annotations", {})}
    expected = {f"monitoring/grafana/dashboards/{f.name}": f for f in dashboard_files(root)}
    assert dashboards.keys() == expected.keys()
    for source, path in expected.items():
        data = dashboards[source]["data"][path.name]
        assert json.loads(data) == json.loads(path.read_text())
        assert dashboards[source]["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_monitoring_objects_carry_the_repository_files():
    # Until monitoring/ has rules and dashboards this checks that none are
    # invented; the fixture test below proves the mechanism meanwhile.
    assert_objects_carry(render(*TOGGLES), MONITORING)


def test_helm_follows_the_symlink_into_a_monitoring_folder(tmp_path):
    # A copy of the chart whose files/monitoring links to a small fixture
    # folder laid out like monitoring/: one rule file, one dashboard.
    fixture = tmp_path / "monitoring"
    (fixture / "prometheus" / "rules").mkdir(parents=True)
    (fixture / "grafana" / "dashboards").mkdir(parents=True)
    (fixture / "prometheus" / "rules" / "kadi_redirects.yml").write_text(
        "groups:\n"
        "  - name: kadi-fixture\n"
        "    rules:\n"
        "      - alert: KadiClicksDropped\n"
        "        expr: increase(kadi_clicks_dropped_total[5m]) > 0\n"
        "        for: 5m\n"
        "        labels:\n"
        "          severity: warning\n"
        "        annotations:\n"
        "          summary: 'Clicks were dropped on {{ $labels.pod }}'\n"
    )
    (fixture / "grafana" / "dashboards" / "kadi-overview.json").write_text(
        json.dumps({"title": "Kadi fixture", "uid": "kadi-fixture", "panels": []})
    )
    chart = tmp_path / "charts" / "kadi"
    shutil.copytree(CHART, chart, symlinks=True)
    link = chart / "files" / "monitoring"
    assert link.is_symlink()
    link.unlink()
    link.symlink_to(pathlib.Path("..", "..", "..", "monitoring"))
    objects = render(*TOGGLES, chart=chart)
    assert len(find(objects, "PrometheusRule")) == 1
    assert_objects_carry(objects, fixture)
    rule = find(objects, "PrometheusRule")[0]
    # Helm must not have expanded the alert template text.
    assert "{{ $labels.pod }}" in rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]


def test_job_labels_match_the_jobs_the_rules_and_dashboards_use():
    import pytest

    config = MONITORING / "prometheus" / "prometheus.yml"
    if not config.exists():
        pytest.skip("monitoring/prometheus/prometheus.yml is not there yet")
    jobs = {c["job_name"] for c in yaml.safe_load(config.read_text())["scrape_configs"]}
    objects = render(*TOGGLES)
    labelled = {s["metadata"]["labels"]["kadi.dev/job"] for s in find(objects, "Service")
                if "kadi.dev/job" in s["metadata"]["labels"]}
    # The rules and dashboards select on `job`; in a cluster the
    # ServiceMonitor's jobLabel gives the same names as the local config.
    assert labelled == {"kadi", "kadi-controller"}
    assert labelled <= jobs
    assert one(objects, "ServiceMonitor", "kadi")["spec"]["jobLabel"] == "kadi.dev/job"
