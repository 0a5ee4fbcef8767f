"""Reproducible evaluation: the same eval run twice with different batch company, per-episode agreement.

    python benchmarks/reproducibility.py [--quick] [--model smollm2] [--limit 100] [--json PATH]

The eval is ``configs/eval_smollm2.yaml`` on GSM8K (the calculator only: no search index needed), SmolLM2-135M on the
default ``cached`` engine (bfloat16 where the CPU has it). Each setting runs twice with the same run seed: once with
many episodes sharing the engine's batch (``max_batch_size`` 32, 32 episodes per worker) and once with few (4 and 4),
so every episode meets different neighbours, in a different order. Episodes are matched by (question, sample):
``same_transcript`` is the share whose every turn is identical, ``same_prediction`` the share with the same final
answer, ``same_reward`` the same grade. Settings: greedy (``temperature: 0``), sampled (0.7, seed 1), and the sampled
eval again with another seed (2) against seed 1, to show what agreement by chance looks like.

Where agreement is below 1, the engine's arithmetic differs with the batch (bf16 padding changes rounding); in
float32 the cached engine's replies equal ``generate``'s (tests/policy/test_kv_engine.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
CROWDED = ["policy.max_batch_size=32", "eval.episodes_per_worker=32"]
SPARSE = ["policy.max_batch_size=4", "eval.episodes_per_worker=4"]


def _run(tmp: str, name: str, model: str, limit: int, extra: list[str]) -> dict:
    from nat_ray.config import load_config
    from nat_ray.evaluation.driver import run_eval
    from nat_ray.storage import read_trajectories

    overrides = [f"out={tmp}/{name}", f"policy.model={model}", f"eval.limit={limit}", "eval.datasets=[gsm8k]"]
    overrides += ["policy.max_tokens=192", "eval.max_turns=4", *extra]
    metrics = run_eval(load_config(REPO / "configs/eval_smollm2.yaml", overrides), progress=False)
    trajs = {(t.id, t.sample_index): t for t in read_trajectories(Path(metrics["run"]["out"]) / "gsm8k")}
    print(f"  {name:<22} accuracy {metrics['datasets']['gsm8k']['accuracy']:.3f} ({metrics['run']['seconds']} s)")
    return trajs


def agreement(a: dict, b: dict) -> dict:
    keys = sorted(a.keys() & b.keys())
    n = len(keys)
    return {
        "episodes": n,
        "same_transcript": sum(a[k].turns == b[k].turns for k in keys) / n,
        "same_prediction": sum(a[k].prediction == b[k].prediction for k in keys) / n,
        "same_reward": sum(a[k].reward == b[k].reward for k in keys) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 questions")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    limit = 16 if args.quick else args.limit

    from nat_ray.ray_init import init_ray
    from nat_ray.storage import write_json

    init_ray()
    result: dict = {"model": args.model, "questions": limit, "dataset": "gsm8k"}
    with tempfile.TemporaryDirectory() as tmp:
        greedy = ["eval.temperature=0", "seed=1"]
        sampled = ["eval.temperature=0.7", "seed=1"]
        g1 = _run(tmp, "greedy crowded", args.model, limit, [*greedy, *CROWDED])
        g2 = _run(tmp, "greedy sparse", args.model, limit, [*greedy, *SPARSE])
        s1 = _run(tmp, "sampled crowded", args.model, limit, [*sampled, *CROWDED])
        s2 = _run(tmp, "sampled sparse", args.model, limit, [*sampled, *SPARSE])
        s3 = _run(tmp, "sampled seed 2", args.model, limit, ["eval.temperature=0.7", "seed=2", *CROWDED])
    result["greedy"] = agreement(g1, g2)
    result["sampled_same_seed"] = agreement(s1, s2)
    result["sampled_other_seed"] = agreement(s1, s3)
    for name in ("greedy", "sampled_same_seed", "sampled_other_seed"):
        r = result[name]
        print(f"{name:<20} {r['episodes']} episodes: same transcript {r['same_transcript']:.3f}, same prediction "
              f"{r['same_prediction']:.3f}, same reward {r['same_reward']:.3f}")  # fmt: skip
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
