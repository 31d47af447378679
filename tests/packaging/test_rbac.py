"""The controller's RBAC grants exactly what kadi-controller calls, and the
app gets no Kubernetes API access at all."""

from conftest import find, one, pod_specs, render

CONTROLLER_SA = "kadi-controller"

# (apiGroup, resource) -> verbs: the calls the controller makes.
CLUSTER_WIDE = {
    ("kadi.dev", "shortlinks"): {"get", "list", "watch", "patch"},
    ("kadi.dev", "shortlinks/status"): {"patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
IN_RELEASE_NAMESPACE = {
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}


def grants(role):
    """(apiGroup, resource) -> verbs of a Role or ClusterRole."""
    result = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule or rule["resourceNames"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                result.setdefault((group, resource), set()).update(rule["verbs"])
    return result


def bound_roles(objects, service_account):
    """Roles and ClusterRoles bound to a ServiceAccount, by (kind, name)."""
    bound = set()
    for binding in find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding"):
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount" and subject["name"] == service_account:
                assert subject["namespace"] == "kadi"
                bound.add((binding["roleRef"]["kind"], binding["roleRef"]["name"]))
    return bound


def test_no_wildcards_anywhere(profile):
    _, objects = profile
    for role in find(objects, "Role") + find(objects, "ClusterRole"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: * in {field}"


def test_controller_cluster_role_is_exactly_what_it_uses(profile):
    _, objects = profile
    assert grants(one(objects, "ClusterRole", "kadi-controller")) == CLUSTER_WIDE


def test_leases_only_in_the_release_namespace(profile):
    _, objects = profile
    role = one(objects, "Role", "kadi-controller-leader-election")
    assert role["metadata"]["namespace"] == "kadi"
    assert grants(role) == IN_RELEASE_NAMESPACE


def test_controller_service_account_is_bound_to_those_two_roles_only(profile):
    _, objects = profile
    assert bound_roles(objects, CONTROLLER_SA) == {
        ("ClusterRole", "kadi-controller"),
        ("Role", "kadi-controller-leader-election"),
    }
    controller = one(objects, "Deployment", "kadi-controller")
    assert controller["spec"]["template"]["spec"]["serviceAccountName"] == CONTROLLER_SA


def test_no_role_grants_secrets_or_pods(profile):
    _, objects = profile
    for role in find(objects, "Role") + find(objects, "ClusterRole"):
        for (_, resource) in grants(role):
            assert resource.split("/")[0] not in ("secrets", "pods", "configmaps"), resource


def test_only_the_controller_gets_an_api_token(profile):
    _, objects = profile
    for owner, spec in pod_specs(objects):
        if owner["metadata"]["name"] == "kadi-controller":
            continue
        assert spec.get("automountServiceAccountToken") is False, owner["metadata"]["name"]
    app_sa = one(objects, "ServiceAccount", "kadi")
    assert app_sa["automountServiceAccountToken"] is False
    assert bound_roles(objects, "kadi") == set()


def test_a_watched_namespace_narrows_shortlinks_and_events_to_a_role():
    objects = render("--set", "controller.watchNamespace=links")
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    role = one(objects, "Role", "kadi-controller")
    assert role["metadata"]["namespace"] == "links"
    assert grants(role) == CLUSTER_WIDE
    binding = one(objects, "RoleBinding", "kadi-controller")
    assert binding["metadata"]["namespace"] == "links"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kadi-controller"}
    env = {e["name"]: e.get("value") for e in
           one(objects, "Deployment", "kadi-controller")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KADI_CONTROLLER_WATCH_NAMESPACE"] == "links"
