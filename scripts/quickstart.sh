#!/usr/bin/env bash
# Fresh machine -> installed project -> the main job on an embedded local Ray, then its report:
# configs/quickstart.yaml (NAT on math: SmolLM2-135M-Instruct, gold GSM8K trajectories and the vanilla model's own
# failures; base vs vanilla vs NUT vs NAT on MultiArith and SVAMP with the calculator), or the config named by
# QUICKSTART_CONFIG (configs/quickstart_strategyqa.yaml: the paper's GPT-3.5 StrategyQA trajectories, search).
# Extra arguments are config overrides, e.g.  bash scripts/quickstart.sh eval.limit=10
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${NAT_RAY_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
CONFIG=${QUICKSTART_CONFIG:-configs/quickstart.yaml}
start=$(date +%s)
# the README's time is an AVX512 CPU's in float32: say up front where this one has no bf16 (AVX2 alone is slower)
python -c "
import torch
from nat_ray.hardware import bf16_support
ok, found = bf16_support(torch.cuda.is_available())
if not ok:
    print(f'quickstart: this {found}: training and generation run in float32. The README times this job on such a '
          'CPU with AVX512 (58 min); with AVX2 alone expect several times that (docs/benchmarks.md, \"Which CPU\"; '
          'python benchmarks/cpu.py measures this one)')"
# what the config needs: its output folder, and whether its tasks search (the StrategyQA job) or calculate (math)
read -r OUT SEARCH < <(python -c "
import sys
from nat_ray.config import load_config
cfg = load_config(sys.argv[1], sys.argv[2:])
print(cfg.out, int(cfg.tools.search is not None))" "$CONFIG" "$@")
# the data, pinned and checksummed (docs/data.md): fetched, or copied from NAT_RAY_DATA_FROM=DIR, or (a checkout with
# a data folder beside it, as in this project's CI) from there
FROM=${NAT_RAY_DATA_FROM:-$( [ -d ../shared/data/nat ] && echo ../shared/data )}
if [ "$SEARCH" = 1 ]; then SETS="nat hotpotqa-distractor"; else SETS="nat gsm8k"; fi
nat-ray data prepare $SETS ${FROM:+--from "$FROM"}
nat-ray models prepare smollm2                     # the policy, as a local model folder (once)
if [ "$SEARCH" = 1 ]; then
  nat-ray search build-index --config "$CONFIG"    # BM25 over StrategyQA facts + HotpotQA paragraphs (once)
fi
nat-ray pipeline --config "$CONFIG" "$@"
echo "quickstart: done in $(( ($(date +%s) - start) / 60 )) min; report: $OUT/report/README.md"
if [ "$SEARCH" = 1 ]; then TASK=strategyqa NAT=nat; else TASK=multiarith NAT=nat-regenerated; fi
cat <<NEXT

Next (README.md has each step):
  source $VENV/bin/activate                         # in every new shell: puts nat-ray, ray, transformers on PATH
  nat-ray show $OUT/eval/$NAT/$TASK -n 3            # what the NAT model did, turn by turn
  nat-ray chat --model $OUT/models/$NAT --task ${TASK/multiarith/gsm8k} --config $CONFIG   # ask it yourself
  nat-ray pipeline --config $CONFIG train.lr=2e-4   # retrains and re-evaluates; nothing else is redone
NEXT
