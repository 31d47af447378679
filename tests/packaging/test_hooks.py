"""Migrations run as a Helm hook before the new version serves, and `helm
test` checks health and a real redirect."""

from conftest import containers, find, one, render

HOOK = "helm.sh/hook"


def migration_job(objects):
    job = one(objects, "Job", "kadi-migrations")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["migrate"]
    assert c["image"] == one(objects, "Deployment", "kadi")["spec"]["template"]["spec"]["containers"][0]["image"]
    return job, c


def test_external_database_is_migrated_before_install_and_upgrade(rendered):
    job, c = migration_job(rendered["eks"])
    assert job["metadata"]["annotations"][HOOK] == "pre-install,pre-upgrade"
    env = {e["name"]: e for e in c["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kadi-database"


def test_bundled_database_is_migrated_after_it_exists_and_before_upgrades(rendered):
    job, _ = migration_job(rendered["default"])
    assert job["metadata"]["annotations"][HOOK] == "post-install,pre-upgrade"


def test_a_url_given_by_value_reaches_the_pre_install_hook_through_a_hook_secret():
    objects = render(
        "--set", "postgresql.enabled=false",
        "--set", "externalDatabase.url=postgres://kadi:pw@db.example:5432/kadi",
    )
    job, c = migration_job(objects)
    hook_secret = one(objects, "Secret", "kadi-migrations")
    # Created before the Job (lower weight), in the same phases, and removed
    # once the hooks succeed.
    assert hook_secret["metadata"]["annotations"][HOOK] == job["metadata"]["annotations"][HOOK]
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert "hook-succeeded" in hook_secret["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    env = {e["name"]: e for e in c["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "kadi-migrations", "key": "database-url"}
    # The app reads the same URL from the release's own Secret.
    app = one(objects, "Deployment", "kadi")["spec"]["template"]["spec"]["containers"][0]
    app_env = {e["name"]: e for e in app["env"]}
    assert app_env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "kadi-external", "key": "database-url"}
    assert one(objects, "Secret", "kadi-external")["stringData"]["database-url"].startswith("postgres://")


def test_manifests_profile_has_no_hooks(rendered):
    for o in rendered["manifests"]:
        if o["kind"] != "Pod":  # the test pod is dropped by --skip-tests
            assert HOOK not in o["metadata"].get("annotations", {}), o["metadata"]["name"]


def test_helm_test_checks_health_and_a_real_redirect(profile):
    _, objects = profile
    pods = [p for p in find(objects, "Pod") if p["metadata"].get("annotations", {}).get(HOOK) == "test"]
    assert len(pods) == 1
    pod = pods[0]
    c = containers(pod["spec"])[0]
    script = "\n".join(c["args"])
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KADI"] == "http://kadi:80"
    for step in ('"$KADI/health"', '"$KADI/readyz"', '"$KADI/users"', '"$KADI/urls"',
                 '"$KADI/$run"', 'test "$got" = "302 $TARGET"'):
        assert step in script, step
    # curl must not follow the redirect out of the cluster.
    assert " -L" not in script and "--location" not in script
    assert pod["spec"]["restartPolicy"] == "Never"


def notes(*args):
    from conftest import CHART, NAMESPACE, helm
    out = helm("install", "kadi", str(CHART), "--namespace", NAMESPACE,
               "--dry-run=client", *args).stdout
    return out[out.index("NOTES:"):]


def test_notes_tell_how_to_reach_kadi_and_create_a_first_shortlink():
    import jsonschema
    import yaml
    from conftest import PROFILES, REPO

    kind = notes(*PROFILES["kind"])
    assert "export KADI=http://kadi.localtest.me" in kind
    default = notes()
    assert "port-forward service/kadi 8080:80" in default
    # The ShortLink in the notes is meant to be applied as it is: when the
    # CRD exists, it must pass the CRD's schema.
    opener = "apply -f - <<'EOF'\n"
    text = default[default.index(opener) + len(opener):]
    shortlink = yaml.safe_load(text[:text.index("\nEOF\n")])
    assert shortlink["kind"] == "ShortLink" and shortlink["apiVersion"] == "kadi.dev/v1alpha1"
    crd_file = REPO / "charts" / "kadi" / "crds" / "shortlink.yaml"
    if crd_file.exists():
        crd = yaml.safe_load(crd_file.read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
        jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"]).validate(shortlink)
