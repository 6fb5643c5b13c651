#!/usr/bin/env bash
# Copies into charts/naaice what the chart carries from elsewhere in the repo (Helm reads only
# files inside the chart): the canonical CRDs, deploy/monitoring's rules and dashboards, and
# deploy/rbac. tests/unit/helm fails while a copy differs; run this, then review `git diff`.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/naaice
cp crds/*.yaml "$chart/crds/"
cp deploy/monitoring/rules/naaice.rules.yaml "$chart/files/"
cp deploy/monitoring/dashboards/*.json "$chart/files/dashboards/"
cp deploy/rbac/*.yaml "$chart/files/rbac/"
echo "synced $chart/crds and $chart/files from crds/ and deploy/"
