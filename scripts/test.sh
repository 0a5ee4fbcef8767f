#!/usr/bin/env bash
# Fresh machine -> installed project -> lint + full test suite. This is what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${NAT_RAY_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
ruff check .
ruff format --check .
# pytest exits 5 when it collects no tests; with `set -e` that fails the run, as it should.
python -m pytest -q -ra --durations=10 "$@"
