#!/usr/bin/env bash
# Set up (see scripts/setup.sh) and run the whole test suite. "No tests collected" is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "[test] pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
