#!/usr/bin/env bash
# Runs the test suite and refuses to pass when nothing ran (pytest exit 5 = no tests collected).
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing, a test run that runs nothing proves nothing" >&2
  exit 1
fi
exit "$rc"
