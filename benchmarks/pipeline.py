"""Pipeline overhead: `nat-ray pipeline` against the sum of its stages run alone with the same configs.

    python benchmarks/pipeline.py [--quick] [--json PATH]

The run is `configs/ci_pipeline.yaml` (the shipped StrategyQA GPT-3.5 trajectories; vanilla and NAT on 8 + 8
examples; two DDP steps of a tiny random 2-layer Llama per variant; eval of both checkpoints and the base model on 4
StrategyQA test questions with BM25 search; the teacher's row; the report). (1) `run_pipeline` into a fresh folder;
(2) the same stages called one by one (`import_nat`, `build` x 2, `run_train` x 2, `run_eval` x 3,
`eval_trajectories`, `write_report`) into another, each timed. Ray is started once before both; the pipeline runs
first (its caches are the colder ones, so the ratio errs against it). `--quick` runs one variant (NAT, no base-model
eval): the same comparison with half the stages.

JSON key: ``overhead_ratio`` = pipeline wall time / sum of the stages' wall times (target <= 1.10).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nat_ray.storage import write_json

REPO = Path(__file__).resolve().parents[1]


def tiny_model(out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from nat_ray.models import prepare

    tok = AutoTokenizer.from_pretrained(prepare("smollm2"))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def stages_alone(cfg, out: Path, modes: tuple[str, ...]) -> dict[str, float]:
    """Each stage by its own entry point, with the config views the pipeline gives it."""
    from nat_ray.config import PolicyConfig
    from nat_ray.evaluation.driver import eval_trajectories, run_eval
    from nat_ray.evaluation.report import write_report
    from nat_ray.nat_import import ImportConfig, import_nat
    from nat_ray.reformat import BuildConfig, build
    from nat_ray.tasks import get_task, prompts_file, resolve_data_dir
    from nat_ray.training.trainer import run_train

    times: dict[str, float] = {}

    def timed(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        fn()
        times[name] = time.monotonic() - t0

    data = resolve_data_dir(cfg.data_dir)
    c = cfg.collect
    imp = ImportConfig(task=c.task, questions=str(data / c.questions), out=str(out / "trajectories"),
                       files=[str(data / f) for f in c.files])  # fmt: skip
    timed("collect", lambda: import_nat(imp, overwrite=True))
    prompts = str(prompts_file(get_task(c.task), cfg.data_dir))
    for mode in modes:
        neg = 0 if mode == "vanilla" else cfg.build.neg_num
        b = BuildConfig(trajectories=str(out / "trajectories"), prompts=prompts, mode=mode, pos_num=cfg.build.pos_num,
                        neg_num=neg, seed=cfg.build.seed, out=str(out / f"sets/{mode}/train.jsonl"))  # fmt: skip
        timed(f"build {mode}", lambda b=b: build(b))
    for mode in modes:
        train = cfg.train.model_copy(
            update={"data": str(out / f"sets/{mode}/train.jsonl"), "out": str(out / f"models/{mode}")}
        )
        timed(f"train {mode}", lambda t=train: run_train(cfg.model_copy(update={"train": t}), progress=False))
    evals = [(m, out / f"models/{m}") for m in modes] + ([("base", cfg.train.model)] if cfg.study.base else [])
    for name, model in evals:
        policy = PolicyConfig.model_validate({**cfg.policy.model_dump(), "model": str(model)})
        ev = cfg.eval.model_copy(update={"out": str(out / f"eval/{name}")})
        timed(f"eval {name}", lambda p=policy, e=ev: run_eval(cfg.model_copy(update={"policy": p, "eval": e}), False))
    timed("eval teacher", lambda: eval_trajectories(out / "trajectories", out / "eval/teacher"))
    timed("report", lambda: write_report(out))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from nat_ray.config import load_config
    from nat_ray.pipeline.driver import run_pipeline
    from nat_ray.ray_init import init_ray
    from nat_ray.tools.search.local import build_index

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = tiny_model(work / "tiny")
        build_index(work / "index", ["hotpotqa", "strategyqa"])
        overrides = [f"train.model={model}", f"tools.search.index.path={work / 'index'}"]
        modes = ("nat",) if args.quick else ("vanilla", "nat")
        if args.quick:
            overrides += ["study.modes=[nat]", "study.base=false"]
        init_ray()
        cfg = load_config(REPO / "configs/ci_pipeline.yaml", [*overrides, f"out={work / 'pipeline'}"])
        t0 = time.monotonic()
        run_pipeline(cfg, progress=False)
        pipeline_s = time.monotonic() - t0
        print(f"pipeline: {pipeline_s:.1f} s", flush=True)
        alone = stages_alone(
            load_config(REPO / "configs/ci_pipeline.yaml", [*overrides, f"out={work / 'alone'}"]), work / "alone", modes
        )
    total = sum(alone.values())
    for name, seconds in alone.items():
        print(f"  {name:<14}{seconds:>8.1f} s")
    ratio = pipeline_s / total
    print(f"stages alone, summed: {total:.1f} s\noverhead_ratio = {ratio:.3f}")
    if args.json:
        result = {"overhead_ratio": ratio, "pipeline_s": pipeline_s, "stages_s": alone, "quick": args.quick}
        write_json(args.json, result)


if __name__ == "__main__":
    main()
