#!/usr/bin/env bash
# Regenerate requirements/constraints.txt: every package a fresh install of nat_ray resolves to today, pinned, so each
# machine (CI, a developer's, every cluster node: ray_cluster.yaml) installs the versions CI tested, not whatever an
# unpinned transitive dependency released since. Run it after changing a pin in pyproject.toml, then run the tests.
# The model packages are not in it: requirements/models.txt pins those by hash and installs them without dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[dev]"
{
  echo "# Every package of a fresh \`pip install -e \".[dev]\"\`, pinned (scripts/lock.sh wrote it; do not edit by hand)."
  echo "# Used as constraints (-c): it installs nothing by itself, it fixes the version of whatever is installed."
  "$work/venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check | sed -e 's/+cpu$//' | sort -f
} >requirements/constraints.txt.tmp
mv requirements/constraints.txt.tmp requirements/constraints.txt
echo "requirements/constraints.txt: $(grep -vc '^#' requirements/constraints.txt) packages"
