"""Renders the Helm chart for the packaging policy tests.

Every test reads real `helm template` output. HELM names the helm binary
(scripts/check-packaging.sh sets it); the default is the copy in .ci-cache/.
"""

import os
import pathlib
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kadi"
HELM = os.environ.get("HELM", str(REPO / ".ci-cache" / "bin" / "helm"))
RELEASE = "kadi"
NAMESPACE = "kadi"

# Value profiles every policy holds for: the defaults and each ci/ file.
PROFILES = {
    "default": [],
    "kind": ["--values", str(CHART / "ci" / "kind-values.yaml")],
    "eks": ["--values", str(CHART / "ci" / "eks-values.yaml")],
    "manifests": ["--values", str(CHART / "ci" / "manifests-values.yaml")],
}


def helm(*args, check=True):
    """Runs helm; returns the completed process."""
    result = subprocess.run(
        [HELM, *args], capture_output=True, text=True, check=False, cwd=REPO
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(*args, chart=CHART, release=RELEASE):
    """`helm template` output as a list of objects (hooks and tests included)."""
    out = helm(
        "template", release, str(chart), "--namespace", NAMESPACE,
        "--include-crds", *args,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def rendered():
    """Objects of every profile, keyed by profile name."""
    return {name: render(*args) for name, args in PROFILES.items()}


@pytest.fixture(params=sorted(PROFILES))
def profile(request, rendered):
    """(name, objects) of one profile; tests using it run once per profile."""
    return request.param, rendered[request.param]


def find(objects, kind, name=None):
    """Objects of `kind` (and `name`, if given)."""
    return [
        o for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects, kind, name):
    """The single object of `kind` called `name`."""
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(objects):
    """(object, pod spec) of every workload, hook Job and test Pod."""
    for o in objects:
        kind = o["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield o, o["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield o, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield o, o["spec"]


def containers(spec):
    """Every container of a pod spec, init containers included."""
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def labels_match(selector, labels):
    """Does a matchLabels selector select these labels?"""
    return all(labels.get(k) == v for k, v in selector.items())
