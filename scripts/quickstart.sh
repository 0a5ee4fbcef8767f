#!/usr/bin/env bash
# Fresh machine -> installed project -> the main job on the shipped data:
# import the paper's GPT-3.5 StrategyQA trajectories, then build the NAT training set from them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${NAT_RAY_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
DATA=${NAT_RAY_DATA_DIR:-../shared/data}
OUT=${OUT:-runs/quickstart}
SQ=$DATA/nat/dataset/strategyqa
mkdir -p "$OUT"
nat-ray import-nat --task StrategyQA --questions "$SQ/train.jsonl" --out "$OUT/trajectories" --overwrite \
  "$SQ/strategyqa_gpt-3.5_positive.json" "$SQ/strategyqa_gpt-3.5_negative.json"
for mode in vanilla nat; do
  neg=all; [ "$mode" = vanilla ] && neg=0
  nat-ray build --trajectories "$OUT/trajectories" --prompts "$DATA/nat/prompts/StrategyQA/StrategyQA_conversation.json" \
    --mode "$mode" --pos-num all --neg-num "$neg" --out "$OUT/train_$mode.jsonl"
done
echo "outputs in $OUT: trajectories/ (Parquet), train_vanilla.jsonl, train_nat.jsonl (+ .manifest.json)"
cat <<EOF

Next (README.md has each step, with its time and memory):
  source $VENV/bin/activate        # in every new shell: puts nat-ray (and ray, transformers) on PATH
  nat-ray models prepare smollm2    # SmolLM2-135M-Instruct as a local model folder (about a minute, once)
  nat-ray train --config configs/train_smollm2_strategyqa_nat.yaml train.max_steps=2
                                    # a short NAT fine-tuning run on $OUT/train_nat.jsonl (a few minutes)
  nat-ray eval --config configs/eval_smollm2.yaml eval.datasets=[gsm8k,svamp] eval.limit=10 \
      policy.model=runs/strategyqa-nat-smollm2/checkpoint      # evaluate it (its NAT hint is picked for you)
  nat-ray eval --trajectories $OUT/trajectories --out $OUT/gpt35-eval   # the GPT-3.5 teacher's metrics
EOF
