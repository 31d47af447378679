#!/usr/bin/env bash
# Regenerates manifests/kadi.yaml (plain YAML for `kubectl apply` users) from
# the Helm chart and charts/kadi/ci/manifests-values.yaml. Run it after any
# change to the chart; scripts/check-packaging.sh fails until you do.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/packaging/tools.sh
source "$REPO_ROOT/scripts/packaging/tools.sh"

ensure_helm
mkdir -p "$REPO_ROOT/manifests"
out="$REPO_ROOT/manifests/kadi.yaml"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
render_manifests >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote ${out#"$REPO_ROOT"/}"
