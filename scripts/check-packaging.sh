#!/usr/bin/env bash
# Checks Kadi's packaging with real tools: the Helm chart (lint, render,
# Kubernetes schemas), the ShortLink examples against their CRD, policy tests
# over the rendered objects (tests/packaging), manifests/ against the chart,
# yamllint, and hadolint on the Dockerfile (which cannot be built here).
# Installs what it needs into .ci-cache/ on the first run.
#
#   scripts/check-packaging.sh
#
# Ends with "packaging: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/packaging/tools.sh
source scripts/packaging/tools.sh

echo "packaging: tools in .ci-cache/"
ensure_helm
ensure_venv
export HELM
export PATH="$VENV/bin:$PATH"
# Keep __pycache__ folders out of the working tree.
export PYTHONDONTWRITEBYTECODE=1
echo "  $("$HELM" version --short), kubernetes-validate $(kubernetes-validate --version 2>&1 | tail -n 1)," \
  "$(yamllint --version), pytest $(python -c 'import pytest; print(pytest.__version__)')"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
notes=()

# check NAME COMMAND...: runs COMMAND, counts it, shows its output on failure.
check() {
  local name=$1
  shift
  if "$@" >"$work/log" 2>&1; then
    passed=$((passed + 1))
    echo "ok    $name"
  else
    failed=$((failed + 1))
    echo "FAIL  $name"
    tail -n 80 "$work/log" | sed 's/^/      /'
  fi
}

note() {
  notes+=("$1")
  echo "note  $1"
}

# Validates files against the Kubernetes schemas, strictly (unknown fields
# fail), for the current release and for the oldest the chart supports.
# Limitation: custom kinds (ShortLink, ServiceMonitor, PrometheusRule) have
# no schema here and only draw a warning. ShortLinks are checked against
# their CRD below; the monitoring objects' shape is checked in tests/packaging.
kube_validate() {
  kubernetes-validate --strict --quiet -k "$KUBE_VERSION" "$@" &&
    kubernetes-validate --strict --quiet -k "$KUBE_MIN_VERSION" "$@"
}

# The validator must refuse what it should, or every pass below is hollow.
validator_refuses_a_broken_deployment() {
  cat >"$work/broken.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: two
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: broken
          image: kadi:0.1.0
          imagePullPolicyTypo: Always
EOF
  ! kubernetes-validate --strict --quiet -k "$KUBE_VERSION" "$work/broken.yaml"
}

render() {
  local out=$1
  shift
  helm_quiet template kadi charts/kadi --namespace kadi --include-crds \
    --kube-version "$KUBE_VERSION" "$@" >"$out" && test -s "$out"
}

echo "packaging: chart"
declare -A profiles=(
  [default]=""
  [kind]="--values charts/kadi/ci/kind-values.yaml"
  [eks]="--values charts/kadi/ci/eks-values.yaml"
  [manifests]="--values charts/kadi/ci/manifests-values.yaml"
  # The EKS profile on a cluster with a custom-metrics adapter and the
  # Prometheus Operator: the HPA gains its request-rate metric.
  [eks-adapter]="--values charts/kadi/ci/eks-values.yaml --api-versions custom.metrics.k8s.io/v1beta2 --api-versions monitoring.coreos.com/v1"
  # Every optional part off.
  [minimal]="--set controller.enabled=false --set autoscaling.enabled=false --set podDisruptionBudget.enabled=false --set redis.enabled=false --set postgresql.persistence.enabled=false --set migrations.enabled=false --set app.preStopSleepSeconds=0 --set app.topologySpread.enabled=false"
  # External services given by URL (chart-made Secrets), TLS by secret,
  # a pull secret, and the controller limited to one namespace.
  [by-value]="--set postgresql.enabled=false --set externalDatabase.url=postgres://kadi:pw@db.example:5432/kadi --set redis.enabled=false --set externalRedis.url=rediss://:pw@cache.example:6379 --set ingress.enabled=true --set ingress.host=sho.example --set ingress.tls.enabled=true --set imagePullSecrets[0].name=registry --set controller.watchNamespace=links"
)
check "kubernetes-validate refuses a broken Deployment" validator_refuses_a_broken_deployment
for profile in default kind eks manifests eks-adapter minimal by-value; do
  read -r -a flags <<<"${profiles[$profile]}"
  if [[ $profile != eks-adapter ]]; then
    check "helm lint --strict ($profile)" helm_quiet lint --strict charts/kadi "${flags[@]}"
  fi
  check "helm template ($profile)" render "$work/$profile.yaml" "${flags[@]}"
  check "kubernetes-validate --strict ($profile, $KUBE_VERSION and $KUBE_MIN_VERSION)" \
    kube_validate "$work/$profile.yaml"
done

echo "packaging: CRD and ShortLink examples"
shopt -s nullglob
crds=(charts/kadi/crds/*.yaml)
if [[ -f manifests/crd.yaml ]]; then crds=(manifests/crd.yaml "${crds[@]}"); fi
examples=(manifests/examples/*.yaml manifests/examples/*.yml)
if ((${#crds[@]} == 0)); then
  note "no CRD yet (manifests/crd.yaml, charts/kadi/crds/): CRD checks skipped"
else
  check "kubernetes-validate --strict (${crds[*]})" kube_validate "${crds[@]}"
  if [[ -f manifests/crd.yaml && -f charts/kadi/crds/shortlink.yaml ]]; then
    check "manifests/crd.yaml and charts/kadi/crds/shortlink.yaml define the same CRD" \
      python - manifests/crd.yaml charts/kadi/crds/shortlink.yaml <<'EOF'
import sys, yaml
a, b = ([d for d in yaml.safe_load_all(open(p)) if d] for p in sys.argv[1:3])
sys.exit(0 if a == b else f"{sys.argv[1]} and {sys.argv[2]} differ")
EOF
  fi
  if ((${#examples[@]} == 0)); then
    note "no ShortLink examples yet (manifests/examples/): CR checks skipped"
  else
    check "kubernetes-validate --strict (manifests/examples, built-in kinds)" kube_validate "${examples[@]}"
    check "ShortLink examples against the CRD's openAPIV3Schema" \
      python scripts/packaging/validate_crs.py "${crds[@]/#/--crd=}" "${examples[@]}"
  fi
fi

echo "packaging: manifests/, YAML and Dockerfile"
manifests_match_the_chart() {
  render_manifests >"$work/kadi.yaml" || return 1
  diff -u manifests/kadi.yaml "$work/kadi.yaml" \
    || { echo "manifests/kadi.yaml is stale: run scripts/render-manifests.sh"; return 1; }
}
check "manifests/kadi.yaml matches the chart (re-rendered)" manifests_match_the_chart
manifest_files=(manifests/*.yaml)
check "kubernetes-validate --strict (${manifest_files[*]})" kube_validate "${manifest_files[@]}"
check "hadolint Dockerfile" hadolint --no-color Dockerfile
check "yamllint (kind-config.yaml, manifests/, chart values)" \
  yamllint --strict -c scripts/packaging/yamllint.yaml \
  kind-config.yaml manifests/ charts/kadi/Chart.yaml charts/kadi/values.yaml charts/kadi/ci/

echo "packaging: policy tests (tests/packaging)"
set +e
python -m pytest -q -p no:cacheprovider --junitxml="$work/junit.xml" tests/packaging >"$work/pytest.log" 2>&1
pytest_rc=$?
set -e
if [[ -f $work/junit.xml ]]; then
  read -r tests failures errors skips < <(python - "$work/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
print(*(int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")))
EOF
  )
else
  tests=0 failures=0 errors=1 skips=0
fi
bad=$((failures + errors))
if ((pytest_rc != 0 && bad == 0)); then bad=1; fi
passed=$((passed + tests - failures - errors - skips))
failed=$((failed + bad))
tail -n 1 "$work/pytest.log" | sed 's/^/      pytest: /'
((pytest_rc == 0)) || sed 's/^/      /' "$work/pytest.log" | tail -n 120

for n in "${notes[@]}"; do echo "packaging: $n"; done
echo "packaging: $passed passed, $failed failed"
((failed == 0))
