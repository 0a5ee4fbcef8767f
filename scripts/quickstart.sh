#!/usr/bin/env bash
# Fresh machine -> installed project -> the main job (configs/quickstart.yaml) on an embedded local Ray:
# SmolLM2-135M-Instruct, the paper's GPT-3.5 StrategyQA trajectories; the base model vs vanilla vs NUT vs NAT
# fine-tuning, each evaluated on StrategyQA test questions with the offline search tool; the report.
# Extra arguments are config overrides, e.g.  bash scripts/quickstart.sh eval.limit=10
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${NAT_RAY_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
CONFIG=configs/quickstart.yaml
start=$(date +%s)
# the data, pinned and checksummed (docs/data.md): fetched, or copied from NAT_RAY_DATA_FROM=DIR, or (a checkout with
# a data folder beside it, as in this project's CI) from there
FROM=${NAT_RAY_DATA_FROM:-$( [ -d ../shared/data/nat ] && echo ../shared/data )}
nat-ray data prepare nat hotpotqa-distractor ${FROM:+--from "$FROM"}
nat-ray models prepare smollm2                     # the policy, as a local model folder (once)
nat-ray search build-index --config "$CONFIG"      # BM25 over StrategyQA facts + HotpotQA paragraphs (once)
nat-ray pipeline --config "$CONFIG" "$@"
OUT=$(python -c "import sys; from nat_ray.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).out)" "$CONFIG" "$@")
echo "quickstart: done in $(( ($(date +%s) - start) / 60 )) min; report: $OUT/report/README.md"
cat <<EOF

Next (README.md has each step):
  source $VENV/bin/activate                         # in every new shell: puts nat-ray, ray, transformers on PATH
  nat-ray show $OUT/eval/nat/strategyqa -n 3        # what the NAT model did, turn by turn
  nat-ray chat --model $OUT/models/nat --task strategyqa --config $CONFIG   # ask it yourself
  nat-ray pipeline --config $CONFIG train.lr=2e-4   # retrains and re-evaluates; nothing else is redone
EOF
