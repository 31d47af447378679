"""Policies every pod of the chart keeps, in every value profile: resources,
probes, a restricted security context, fixed image tags, spread, graceful
termination, and autoscaling that a drain cannot block."""

import math
import re

from conftest import containers, find, labels_match, one, pod_specs, render

LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")


def test_every_container_has_cpu_and_memory_requests_and_limits(profile):
    _, objects = profile
    for owner, spec in pod_specs(objects):
        for c in containers(spec):
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resources.get(part, {}).get(resource), (
                        f"{owner['kind']}/{owner['metadata']['name']} container "
                        f"{c['name']} has no {part}.{resource}"
                    )


def test_long_running_containers_have_startup_liveness_and_readiness_probes(profile):
    _, objects = profile
    for owner, spec in pod_specs(objects):
        if owner["kind"] not in LONG_RUNNING:
            continue
        for c in spec["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in c, f"{owner['metadata']['name']}/{c['name']} lacks {probe}"


def test_app_probes_use_livez_and_readyz_on_the_http_port(rendered):
    app = one(rendered["default"], "Deployment", "kadi")
    c = app["spec"]["template"]["spec"]["containers"][0]
    paths = {p: (c[p]["httpGet"]["path"], c[p]["httpGet"]["port"])
             for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {
        "startupProbe": ("/livez", "http"),
        "livenessProbe": ("/livez", "http"),
        "readinessProbe": ("/readyz", "http"),
    }


def test_controller_probes_use_its_health_endpoints_on_the_metrics_port(rendered):
    controller = one(rendered["default"], "Deployment", "kadi-controller")
    c = controller["spec"]["template"]["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def effective(spec, container, key):
    """A securityContext field, the container's value winning over the pod's."""
    value = container.get("securityContext", {}).get(key)
    if value is None:
        value = spec.get("securityContext", {}).get(key)
    return value


def test_every_container_runs_restricted_non_root_with_a_read_only_root(profile):
    _, objects = profile
    for owner, spec in pod_specs(objects):
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        assert not any("hostPath" in v for v in spec.get("volumes", [])), where
        for c in containers(spec):
            at = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            assert effective(spec, c, "runAsNonRoot") is True, at
            uid = effective(spec, c, "runAsUser")
            assert isinstance(uid, int) and uid > 0, f"{at}: numeric non-root uid needed, got {uid}"
            assert sc.get("readOnlyRootFilesystem") is True, at
            assert sc.get("allowPrivilegeEscalation") is False, at
            assert sc.get("privileged") in (None, False), at
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not sc.get("capabilities", {}).get("add"), at
            seccomp = effective(spec, c, "seccompProfile") or {}
            assert seccomp.get("type") == "RuntimeDefault", at


def test_no_image_uses_latest_or_no_tag(profile):
    _, objects = profile
    for owner, spec in pod_specs(objects):
        for c in containers(spec):
            image = c["image"]
            name = image.rsplit("/", 1)[-1]
            assert "@sha256:" in image or ":" in name, f"{image} has no tag"
            assert not image.endswith(":latest"), f"{image} uses latest"


def test_latest_tag_is_refused_by_the_schema_and_the_templates():
    assert "/app/image/tag" in render_fails("--set", "app.image.tag=latest")
    # The templates refuse it too, for tools that skip the schema.
    stderr = render_fails("--skip-schema-validation", "--set", "controller.image.tag=latest")
    assert 'needs a fixed tag, not "latest"' in stderr


def render_fails(*args):
    from conftest import CHART, NAMESPACE, helm
    result = helm("template", "x", str(CHART), "--namespace", NAMESPACE, *args, check=False)
    assert result.returncode != 0, f"helm template {' '.join(args)} should fail"
    return result.stderr


def test_app_pods_spread_over_nodes_and_zones(profile):
    _, objects = profile
    app = one(objects, "Deployment", "kadi")
    spec = app["spec"]["template"]["spec"]
    keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    pod_labels = app["spec"]["template"]["metadata"]["labels"]
    for t in spec["topologySpreadConstraints"]:
        assert labels_match(t["labelSelector"]["matchLabels"], pod_labels)


def test_termination_grace_outlasts_prestop_and_click_drain(profile):
    _, objects = profile
    app = one(objects, "Deployment", "kadi")
    spec = app["spec"]["template"]["spec"]
    config = one(objects, "ConfigMap", "kadi")["data"]
    shutdown = int(config["KADI_SHUTDOWN_GRACE_SECS"])
    c = spec["containers"][0]
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    # In-flight requests get `shutdown` seconds, then the click queue drains.
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + shutdown + 5
    assert pre_stop > 0, "endpoints need a moment to drop a terminating pod"


def test_app_listens_on_all_interfaces_with_metrics_on_their_own_port(profile):
    _, objects = profile
    config = one(objects, "ConfigMap", "kadi")["data"]
    assert config["KADI_LISTEN"] == "0.0.0.0:8080"
    metrics_port = int(config["KADI_METRICS_LISTEN"].rsplit(":", 1)[1])
    assert metrics_port != 8080
    assert config["KADI_LOG_FORMAT"] == "json"
    ports = {p["name"]: p["containerPort"] for p in
             one(objects, "Deployment", "kadi")["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"http": 8080, "metrics": metrics_port}


def workload_for(objects, selector):
    """The Deployment or StatefulSet whose pods a selector picks."""
    matches = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")
               and labels_match(selector, o["spec"]["template"]["metadata"]["labels"])]
    assert len(matches) == 1, f"selector {selector} picks {len(matches)} workloads"
    return matches[0]


def fewest_replicas(objects, workload):
    """The fewest replicas a workload runs: its HPA's minimum, or its count."""
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["kind"] == workload["kind"] and ref["name"] == workload["metadata"]["name"]:
            return hpa["spec"].get("minReplicas", 1)
    return workload["spec"].get("replicas", 1)


def evictions_allowed(pdb_spec, replicas):
    """Pods a PDB lets a drain evict from `replicas` healthy ones."""
    def count(value, round_up):
        if isinstance(value, str) and value.endswith("%"):
            share = replicas * int(value[:-1]) / 100
            return math.ceil(share) if round_up else math.floor(share)
        return int(value)
    if "maxUnavailable" in pdb_spec:
        return count(pdb_spec["maxUnavailable"], round_up=True)
    return replicas - count(pdb_spec["minAvailable"], round_up=True)


def test_the_drain_check_itself_flags_blocking_budgets():
    assert evictions_allowed({"minAvailable": 2}, 2) == 0
    assert evictions_allowed({"minAvailable": "100%"}, 3) == 0
    assert evictions_allowed({"maxUnavailable": 0}, 2) == 0
    assert evictions_allowed({"maxUnavailable": "10%"}, 2) == 1
    assert evictions_allowed({"minAvailable": 1}, 2) == 1


def test_no_pdb_blocks_a_drain_at_the_hpa_minimum(profile):
    name, objects = profile
    pdbs = find(objects, "PodDisruptionBudget")
    assert pdbs, f"{name}: no PodDisruptionBudget"
    for pdb in pdbs:
        workload = workload_for(objects, pdb["spec"]["selector"]["matchLabels"])
        replicas = fewest_replicas(objects, workload)
        assert evictions_allowed(pdb["spec"], replicas) >= 1, (
            f"{name}: PDB {pdb['metadata']['name']} allows no eviction at {replicas} replicas"
        )


def test_hpa_scales_the_app_from_two_replicas_on_cpu(profile):
    _, objects = profile
    hpa = one(objects, "HorizontalPodAutoscaler", "kadi")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kadi"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    # The HPA owns the replica count; a value in the Deployment would fight it.
    assert "replicas" not in one(objects, "Deployment", "kadi")["spec"]


def test_hpa_adds_request_rate_only_when_a_custom_metrics_api_is_served():
    def metric_types(*args):
        hpa = one(render(*args), "HorizontalPodAutoscaler", "kadi")
        return [m["type"] for m in hpa["spec"]["metrics"]]
    assert metric_types() == ["Resource"]
    assert metric_types("--api-versions", "custom.metrics.k8s.io/v1beta2") == ["Resource", "Pods"]
    assert metric_types("--set", "autoscaling.requestRate.enabled=true") == ["Resource", "Pods"]
    assert metric_types("--api-versions", "custom.metrics.k8s.io/v1beta2",
                        "--set", "autoscaling.requestRate.enabled=false") == ["Resource"]


def test_hpa_minimum_below_two_is_refused():
    render_fails("--set", "autoscaling.minReplicas=1")


def test_controller_runs_two_replicas_with_leader_election_identity(profile):
    _, objects = profile
    controller = one(objects, "Deployment", "kadi-controller")
    assert controller["spec"]["replicas"] == 2
    c = controller["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["KADI_CONTROLLER_LEASE_NAME"]["value"] == "kadi-controller"
    assert env["KADI_CONTROLLER_METRICS_LISTEN"]["value"] == "0.0.0.0:9090"
    assert env["KADI_PUBLIC_URL"]["value"] == one(objects, "ConfigMap", "kadi")["data"]["KADI_PUBLIC_URL"]


def test_connection_urls_never_appear_in_plain_env(profile):
    name, objects = profile
    for owner, spec in pod_specs(objects):
        for c in containers(spec):
            for e in c.get("env", []):
                if e["name"] in ("DATABASE_URL", "REDIS_URL") and "value" in e:
                    # Only composed from a password read from a Secret.
                    assert re.search(r"\$\((KADI_POSTGRES_PASSWORD|KADI_REDIS_PASSWORD)\)", e["value"]), (
                        f"{name}: {owner['metadata']['name']} has {e['name']} in plain text"
                    )


def test_external_database_comes_from_the_existing_secret(rendered):
    objects = rendered["eks"]
    assert not find(objects, "StatefulSet"), "no bundled PostgreSQL on EKS"
    assert not find(objects, "Secret"), "existing Secrets are used, none created"
    for owner, spec in pod_specs(objects):
        for c in containers(spec):
            env = {e["name"]: e for e in c.get("env", [])}
            if "DATABASE_URL" in env:
                ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "kadi-database", "key": "database-url"}, owner["metadata"]["name"]


def test_object_names_and_labels_come_from_the_release():
    objects = render(release="shop")
    for o in objects:
        if o["kind"] == "CustomResourceDefinition":
            continue  # from crds/, named after its group
        meta = o["metadata"]
        assert meta["name"].startswith("shop-kadi"), f"{o['kind']}/{meta['name']}"
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == "shop", meta["name"]
        assert labels.get("app.kubernetes.io/name") == "kadi", meta["name"]
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", meta["name"]
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert meta["namespace"] == "kadi", meta["name"]
