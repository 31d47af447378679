"""kind-config.yaml builds the cluster the docs describe, and the ShortLink
validator used by check-packaging.sh tells good examples from bad ones."""

import subprocess
import sys
import textwrap

import yaml

from conftest import REPO

VALIDATOR = REPO / "scripts" / "packaging" / "validate_crs.py"


def test_kind_cluster_has_one_control_plane_two_workers_and_ingress_ports():
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    control = config["nodes"][0]
    assert control["labels"]["ingress-ready"] == "true"
    ports = {(m["containerPort"], m["hostPort"]) for m in control["extraPortMappings"]}
    assert ports == {(80, 80), (443, 443)}
    zones = {n["labels"]["topology.kubernetes.io/zone"] for n in config["nodes"][1:]}
    assert len(zones) == 2


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: shortlinks.kadi.dev
spec:
  group: kadi.dev
  names: {kind: ShortLink, plural: shortlinks}
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          x-kubernetes-validations:
            - rule: "self.metadata.name == oldSelf.metadata.name"
          properties:
            spec:
              type: object
              required: [url]
              x-kubernetes-validations:
                - rule: "!(has(self.ttl) && has(self.expiresAt))"
                  message: set ttl or expiresAt, not both
              properties:
                url: {type: string, minLength: 8}
                ttl: {type: string}
                expiresAt: {type: string}
                maxVisits: {type: integer, minimum: 1}
"""


def validate(tmp_path, name, body):
    (tmp_path / "crd.yaml").write_text(CRD)
    example = tmp_path / name
    example.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(VALIDATOR), "--crd", str(tmp_path / "crd.yaml"), str(example)],
        capture_output=True, text=True, check=False,
    )


GOOD = """\
    apiVersion: kadi.dev/v1alpha1
    kind: ShortLink
    metadata: {name: docs}
    spec: {url: https://example.com/docs}
    ---
    apiVersion: v1
    kind: Namespace
    metadata: {name: links}
"""
BAD = """\
    apiVersion: kadi.dev/v1alpha1
    kind: ShortLink
    metadata: {name: docs}
    spec: {maxVisits: "ten"}
"""


def test_validator_passes_a_good_shortlink(tmp_path):
    result = validate(tmp_path, "docs.yaml", GOOD)
    assert result.returncode == 0, result.stdout


def test_validator_fails_a_bad_shortlink_and_says_why(tmp_path):
    result = validate(tmp_path, "docs.yaml", BAD)
    assert result.returncode == 1
    assert "'url' is a required property" in result.stdout
    assert "spec.maxVisits" in result.stdout


CEL_REFUSED = """\
    apiVersion: kadi.dev/v1alpha1
    kind: ShortLink
    metadata: {name: docs}
    spec: {url: https://example.com/docs, ttl: 24h, expiresAt: "2026-12-31T00:00:00Z"}
"""


def test_validator_evaluates_cel_rules_but_not_transition_rules(tmp_path):
    refused = validate(tmp_path, "docs.yaml", CEL_REFUSED)
    assert refused.returncode == 1
    assert "spec: set ttl or expiresAt, not both" in refused.stdout
    # The oldSelf rule at the root needs a stored object and is skipped.
    assert validate(tmp_path, "docs.yaml", GOOD).returncode == 0
    assert validate(tmp_path, "invalid-docs.yaml", CEL_REFUSED).returncode == 0


def test_validator_expects_files_named_invalid_to_fail(tmp_path):
    assert validate(tmp_path, "invalid-docs.yaml", BAD).returncode == 0
    assert validate(tmp_path, "invalid-docs.yaml", GOOD).returncode == 1


def test_validator_on_the_real_crd_refuses_a_shortlink_without_url(tmp_path):
    import pytest

    crd = REPO / "charts" / "kadi" / "crds" / "shortlink.yaml"
    if not crd.exists():
        pytest.skip("charts/kadi/crds/shortlink.yaml is not there yet")
    example = tmp_path / "links.yaml"

    def run(spec):
        example.write_text(yaml.safe_dump(
            {"apiVersion": "kadi.dev/v1alpha1", "kind": "ShortLink",
             "metadata": {"name": "docs"}, "spec": spec}))
        return subprocess.run(
            [sys.executable, str(VALIDATOR), "--crd", str(crd), str(example)],
            capture_output=True, text=True, check=False,
        )

    assert run({"url": "https://example.com/docs"}).returncode == 0
    refused = run({"shortCode": "docs"})
    assert refused.returncode == 1 and "'url' is a required property" in refused.stdout
