#!/usr/bin/env bash
# Fresh machine -> installed project -> lint + full test suite. This is what .ci/run calls.
# The suite runs as on a machine that has never run it: HOME and the XDG folders point at an empty temporary folder
# (removed afterwards), so no Ray token (~/.ray), prepared model or cache left by an earlier run can hide a missing
# step; tests/conftest.py then gives the session a home, caches and a Ray temp dir of its own inside it. The install
# keeps the machine's own HOME: pip's configuration (indexes, find-links) lives there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${NAT_RAY_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
ruff check .
ruff format --check .
# the data: the pinned public files, checked, into a folder of the checkout (.data, git-ignored) unless
# NAT_RAY_DATA_DIR names one; beside ../shared/data (this project's CI) they are copied from there, else fetched
export NAT_RAY_DATA_DIR="${NAT_RAY_DATA_DIR:-$PWD/.data}"
nat-ray data prepare $( [ -d ../shared/data/nat ] && echo --from ../shared/data )
FRESH_HOME=$(mktemp -d /tmp/nat-ray-home.XXXXXX)
trap 'rm -rf "$FRESH_HOME"' EXIT
# pytest exits 5 when it collects no tests; with `set -e` that fails the run, as it should. Two xdist workers, each
# a session of its own (home, Ray, caches: tests/conftest.py): much of a Ray test is waiting (start-up, actors,
# subprocesses), so two share 2 cores well (pytest 27.4 -> 24.3 min here, docs/benchmarks.md).
env HOME="$FRESH_HOME" XDG_CACHE_HOME="$FRESH_HOME/.cache" XDG_CONFIG_HOME="$FRESH_HOME/.config" \
    XDG_DATA_HOME="$FRESH_HOME/.local/share" XDG_STATE_HOME="$FRESH_HOME/.local/state" \
    python -m pytest -q -ra --durations=25 -n 2 --dist worksteal "$@"
