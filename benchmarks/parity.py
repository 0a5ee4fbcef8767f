"""bf16 parity in evaluation: one checkpoint evaluated greedily in bfloat16 and in float32 on the same questions.

    python benchmarks/parity.py --model runs/quickstart-strategyqa/models/nat
                                [--config configs/quickstart_strategyqa.yaml]
                                [--limit 100] [--dataset strategyqa] [--json PATH]

Both runs use the config's eval and tools (the quickstart's: StrategyQA with BM25 search, up to 4 turns), the
transformers engine with ``policy.dtype`` pinned to ``bfloat16`` and to ``float32`` (``eval.repeatable: false``),
``eval.temperature: 0`` (greedy: the only difference between the runs is the arithmetic). Episodes are paired by
question: ``agreement`` is the share of questions graded the same, ``same_transcript`` the share whose every turn is
identical, and ``p_mcnemar`` the exact McNemar p-value on the discordant pairs (bf16 right / float32 wrong and the
reverse).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a checkpoint folder or a prepared model name")
    parser.add_argument("--config", type=Path, default=REPO / "configs/quickstart_strategyqa.yaml")
    parser.add_argument("--dataset", default="strategyqa")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from nat_ray.config import load_config
    from nat_ray.evaluation.driver import run_eval
    from nat_ray.evaluation.metrics import mcnemar_exact
    from nat_ray.ray_init import init_ray
    from nat_ray.storage import read_trajectories, write_json

    init_ray()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("bfloat16", "float32"):
            cfg = load_config(
                args.config,
                [
                    f"out={tmp}/{dtype}",
                    f"policy.model={args.model}",
                    f"policy.dtype={dtype}",
                    "eval.repeatable=false",  # else an eval decodes in float32 whatever policy.dtype says
                    "eval.temperature=0",
                    f"eval.limit={args.limit}",
                    f"eval.datasets=[{args.dataset}]",
                ],
            )
            metrics = run_eval(cfg, progress=False)
            trajs = {t.id: t for t in read_trajectories(Path(metrics["run"]["out"]) / args.dataset)}
            runs[dtype] = {"metrics": metrics["datasets"][args.dataset], "seconds": metrics["run"].get("seconds"),
                           "trajectories": trajs}  # fmt: skip
            m = runs[dtype]["metrics"]
            print(f"  {dtype:<9} accuracy {m['accuracy']:.3f} on n={m['n']} ({runs[dtype]['seconds']} s)", flush=True)
    bf, fp = runs["bfloat16"]["trajectories"], runs["float32"]["trajectories"]
    shared = sorted(set(bf) & set(fp))
    right = {k: {q: bool(t[q].reward) for q in shared} for k, t in (("bf16", bf), ("fp32", fp))}
    bf_only = sum(right["bf16"][q] and not right["fp32"][q] for q in shared)
    fp_only = sum(right["fp32"][q] and not right["bf16"][q] for q in shared)
    same = sum(right["bf16"][q] == right["fp32"][q] for q in shared)
    same_turns = sum([x.content for x in bf[q].turns] == [x.content for x in fp[q].turns] for q in shared)
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "n_pairs": len(shared),
        "accuracy_bf16": sum(right["bf16"].values()) / len(shared),
        "accuracy_fp32": sum(right["fp32"].values()) / len(shared),
        "bf16_only": bf_only,
        "fp32_only": fp_only,
        "agreement": same / len(shared),
        "same_transcript": same_turns / len(shared),
        "p_mcnemar": mcnemar_exact(bf_only, fp_only),
        "seconds": {k: runs[k]["seconds"] for k in runs},
    }
    print(
        f"{args.dataset}, {len(shared)} questions, greedy: accuracy bf16 {result['accuracy_bf16']:.3f} vs float32 "
        f"{result['accuracy_fp32']:.3f}; agreement {result['agreement']:.3f}, identical transcripts "
        f"{result['same_transcript']:.3f}; discordant {bf_only} / {fp_only}, McNemar p = {result['p_mcnemar']:.3f}"
    )
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
