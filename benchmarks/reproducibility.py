"""Reproducible evaluation: the same eval run twice with different batch company, per-episode agreement.

    python benchmarks/reproducibility.py --model runs/quickstart-strategyqa/models/nat
                                         [--config configs/quickstart_strategyqa.yaml]
                                         [--dataset strategyqa] [--limit 100] [--quick] [--only greedy]
                                         [--json PATH] [key=value ...]

The eval is the config's (the quickstart's: StrategyQA with BM25 search, up to 4 turns) of ``--model`` (a fine-tuned
checkpoint: the base SmolLM2 ends nearly every episode with one malformed reply, which would make agreement trivial)
on the default ``cached`` engine, which an eval runs in float32 (``eval.repeatable``, on by default); the override
``eval.repeatable=false`` measures it in the policy's own dtype (bfloat16 where the CPU has it). Each setting runs
twice with the same run seed: once with many episodes sharing the engine's batch (``max_batch_size`` 32, 32 episodes
per worker) and once with few (4 and 4), so every episode meets different neighbours, in a different order. Episodes
are matched by (question, sample): ``same_transcript`` is the share whose every turn (and malformed reply) is
identical, ``same_prediction`` the share with the same final answer, ``same_reward`` the same grade. Settings: greedy
(``temperature: 0``), sampled (0.7, seed 1), and the sampled eval again with another seed (2) against seed 1, to show
what agreement by chance looks like. Greedy also runs the crowded eval a second time (``greedy_repeat``: the same
config twice). ``--only greedy`` skips the sampled settings.

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


def _run(tmp: str, name: str, args, extra: list[str]) -> dict:
    from nat_ray.config import load_config
    from nat_ray.evaluation.driver import run_eval
    from nat_ray.storage import read_trajectories

    overrides = [f"eval.out={tmp}/{name}", f"policy.model={args.model}", f"eval.limit={args.limit}",
                 f"eval.datasets=[{args.dataset}]", *args.overrides, *extra]  # fmt: skip
    metrics = run_eval(load_config(args.config, overrides), progress=False)
    trajs = {(t.id, t.sample_index): t for t in read_trajectories(Path(metrics["run"]["out"]) / args.dataset)}
    m = metrics["datasets"][args.dataset]
    print(f"  {name:<22} accuracy {m['accuracy']:.3f} ({metrics['run']['seconds']} s)", flush=True)
    return trajs


def _transcript(t) -> tuple:
    return tuple(x.content for x in t.turns), t.malformed_reply


def agreement(a: dict, b: dict) -> dict:
    keys = sorted(a.keys() & b.keys())
    n = len(keys)
    return {
        "episodes": n,
        "same_transcript": sum(_transcript(a[k]) == _transcript(b[k]) for k in keys) / n,
        "same_prediction": sum(a[k].prediction == b[k].prediction for k in keys) / n,
        "same_reward": sum(a[k].reward == b[k].reward for k in keys) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 questions")
    parser.add_argument("--model", required=True, help="a checkpoint folder (or a prepared model name)")
    parser.add_argument("--config", type=Path, default=REPO / "configs/quickstart_strategyqa.yaml")
    parser.add_argument("--dataset", default="strategyqa")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--only", choices=["greedy", "sampled"], default=None, help="one setting")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="more config overrides (paths, ...)")
    args = parser.parse_args()
    if args.quick:
        args.limit = 16

    from nat_ray.ray_init import init_ray
    from nat_ray.storage import write_json

    init_ray()
    result: dict = {
        "model": str(args.model),
        "questions": args.limit,
        "dataset": args.dataset,
        "overrides": args.overrides,
    }
    with tempfile.TemporaryDirectory() as tmp:
        greedy = ["eval.temperature=0", "seed=1"]
        sampled = ["eval.temperature=0.7", "seed=1"]
        if args.only != "sampled":
            g1 = _run(tmp, "greedy crowded", args, [*greedy, *CROWDED])
            g2 = _run(tmp, "greedy sparse", args, [*greedy, *SPARSE])
            g3 = _run(tmp, "greedy crowded again", args, [*greedy, *CROWDED])
            result["greedy"] = agreement(g1, g2)
            result["greedy_repeat"] = agreement(g1, g3)
        if args.only != "greedy":
            s1 = _run(tmp, "sampled crowded", args, [*sampled, *CROWDED])
            s2 = _run(tmp, "sampled sparse", args, [*sampled, *SPARSE])
            s3 = _run(tmp, "sampled seed 2", args, ["eval.temperature=0.7", "seed=2", *CROWDED])
            result["sampled_same_seed"] = agreement(s1, s2)
            result["sampled_other_seed"] = agreement(s1, s3)
    for name in ("greedy", "greedy_repeat", "sampled_same_seed", "sampled_other_seed"):
        if name not in result:
            continue
        r = result[name]
        print(f"{name:<20} {r['episodes']} episodes: same transcript {r['same_transcript']:.3f}, same prediction "
              f"{r['same_prediction']:.3f}, same reward {r['same_reward']:.3f}")  # fmt: skip
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
