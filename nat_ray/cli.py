"""The ``nat-ray`` command.

    nat-ray calc "EXPR"                       the calculator observation for one expression
    nat-ray calc < exprs.jsonl                lines {"expression"} -> lines {"expression", "observation"}
    nat-ray grade --task TASK < preds.jsonl   lines {"gt", "pred"} -> lines {"reward"[, "em", "f1"]}
    nat-ray import-nat --task TASK --questions FILE --out DIR TRAJ.json [TRAJ.json ...]
    nat-ray build --trajectories DIR --prompts FILE --mode MODE [--template NAME] --pos-num N --neg-num M
                  [--seed 42] --out PATH
    nat-ray rollout --config FILE [key=value ...]
    nat-ray train --config FILE [key=value ...]
    nat-ray eval --config FILE [key=value ...]           trajectories per data set + metrics.json
    nat-ray eval --trajectories DIR --out OUT            metrics.json of an existing trajectories dataset
    nat-ray show DIR [--label L] [--finish-reason R] [-n N]
    nat-ray chat --model DIR --task TASK [--hint correct|incorrect|none]
    nat-ray pipeline --config FILE [key=value ...]       collect -> build -> train -> eval -> report
    nat-ray report RUN_DIR [--with RUN_DIR]              tables + plots of a run
    nat-ray compare EVAL_A EVAL_B [--names A B] [--seed EVAL_A EVAL_B ...]   two evals of the same questions, paired
    nat-ray pool-seeds RUN_DIR RUN_DIR [...] --out DIR   one report over runs that differ in train.seed
    nat-ray verdict FILE --out DIR            named comparisons across run folders and seeds, Holm over them all
    nat-ray models prepare NAME               smollm2, mpnet, minilm
    nat-ray models export-openvino MODEL [--out DIR]   OpenVINO IR for policy.kind openvino (else made on first use)
    nat-ray data prepare [NAME ...] [--from DIR]   the public data files, checked, into NAT_RAY_DATA_DIR
    nat-ray search build-index --config FILE [key=value ...]
    nat-ray search query --config FILE [key=value ...] -q QUERY [-q QUERY ...]

On a cluster: ray job submit --working-dir . -- nat-ray rollout --config configs/rollout_gsm8k_openai.yaml

Errors in the input are reported as one line naming the file, line, id or key, with exit status 2, and leave no
partial output behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from nat_ray.cli_setup import add_setup_commands
from nat_ray.cli_tools import add_tool_commands
from nat_ray.errors import InputError, NatRayError, first_validation_error
from nat_ray.ray_init import leave_ray
from nat_ray.records import METRICS, REPORT_README, TABLE, RunLayout
from nat_ray.storage import write_json


def _count(value: str) -> int:
    if value == "all":
        return -1
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number or 'all', got {value}")
    return n


M = TypeVar("M", bound=BaseModel)


def validated(kind: type[M], section: str, **fields: object) -> M:
    """A config section filled from flags, validated as the pipeline validates it from a file."""
    try:
        return kind(**fields)
    except ValidationError as exc:
        loc, msg = first_validation_error(exc)
        raise InputError(f"{section}{'.' + loc if loc else ''}: {msg}") from None


def cmd_import_nat(args: argparse.Namespace) -> int:
    from nat_ray.config_sections import CollectConfig
    from nat_ray.nat_import import ImportConfig, import_nat

    section = validated(CollectConfig, "collect", task=args.task, questions=args.questions, files=args.files,
                        model=args.model)  # fmt: skip
    meta = import_nat(ImportConfig.from_section(section, args.out), overwrite=args.overwrite)
    print(json.dumps({"out": args.out, **meta.counts}))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from nat_ray.config_sections import BuildStageConfig
    from nat_ray.reformat import BuildConfig, build

    counts = {k: "all" if n == -1 else n for k, n in (("pos_num", args.pos_num), ("neg_num", args.neg_num))}
    section = validated(BuildStageConfig, "build", mode=args.mode, template=args.template, seed=args.seed,
                        selection=args.selection, **counts)  # fmt: skip
    config = BuildConfig.from_section(section, args.trajectories, args.prompts, args.out, args.negatives_from)
    meta = build(config)
    print(json.dumps({"out": args.out, "template": (meta.config or {})["template"], **meta.counts}))
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from nat_ray.config import load_config
    from nat_ray.rollout.driver import run_rollout

    meta = run_rollout(load_config(args.config, args.overrides), progress=not args.no_progress)
    leave_ray()
    print(json.dumps({**meta["counts"], "complete": meta["complete"], **meta.get("run", {})}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from nat_ray.config import load_config
    from nat_ray.training.trainer import run_train

    summary = run_train(load_config(args.config, args.overrides))
    leave_ray()
    print(json.dumps(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from nat_ray.evaluation.metrics import format_table

    if (args.config is None) == (args.trajectories is None):
        raise InputError("give --config FILE (run an eval) or --trajectories DIR --out OUT (metrics of a dataset)")
    if args.trajectories is not None:
        from nat_ray.evaluation.driver import eval_trajectories

        if args.out is None or args.overrides:
            raise InputError("--trajectories DIR needs --out OUT, and takes no key=value overrides")
        metrics = eval_trajectories(args.trajectories, args.out)
        out = Path(args.out)
    else:
        from nat_ray.config import load_config
        from nat_ray.evaluation.driver import run_eval

        if args.out is not None:
            raise InputError("--out is for --trajectories; with --config set eval.out=PATH")
        metrics = run_eval(load_config(args.config, args.overrides), progress=not args.no_progress)
        out = Path(metrics["run"]["out"])
    leave_ray()
    print(format_table(metrics))
    print(f"metrics: {out / METRICS}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from nat_ray.config import load_config
    from nat_ray.pipeline.driver import run_pipeline, validate
    from nat_ray.pipeline.power_plan import plan_lines, plan_source

    cfg = load_config(args.config, args.overrides)
    if args.plan_from is not None and not plan_source(Path(args.plan_from)):
        raise InputError(f"--plan-from {args.plan_from}: not a pipeline run folder with a report (report/ missing) "
                         "nor a `nat-ray pool-seeds` folder")  # fmt: skip
    if args.plan or args.plan_from is not None:
        print("\n".join(plan_lines(validate(cfg), Path(args.plan_from) if args.plan_from else None)))
        return 0
    summary = run_pipeline(cfg, progress=not args.no_progress)
    leave_ray()
    print(json.dumps(summary))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nat_ray.evaluation.report import write_report

    counts = write_report(args.run_dir, also=[Path(r) for r in args.also or []])
    report = RunLayout(args.run_dir).report
    print((report / TABLE).read_text())
    print(json.dumps({"report": str(report), **counts}))
    return 0


def cmd_pool_seeds(args: argparse.Namespace) -> int:
    from nat_ray.evaluation.report_seeds import write_seeds_report

    counts = write_seeds_report(args.run_dirs, args.out)
    print((Path(args.out) / TABLE).read_text())
    print(json.dumps({"report": str(args.out), **counts}))
    return 0


def cmd_verdict(args: argparse.Namespace) -> int:
    from nat_ray.evaluation.verdict import write_verdict

    counts = write_verdict(args.file, args.out)
    print(json.dumps({"report": str(Path(args.out) / REPORT_README), **counts}))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from nat_ray.evaluation import report_paired as rp

    a, b = Path(args.a), Path(args.b)
    names = tuple(args.names) if args.names else (a.name, b.name)
    more = [(Path(x), Path(y)) for x, y in args.seed or []]
    paired, loops, refused = rp.compare_evals(a, b, names, more)
    print("\n".join([rp.PAIRED_TEXT, "", rp.comparisons_table(paired, refused)]))
    if more:
        print("\n".join(["", rp.CROSSED_TEXT, "", rp.crossed_table(paired)]))
    if loops:
        print("\n".join(["", rp.LOOPS_TEXT, "", rp.comparisons_table(loops, [])]))
    if args.out:
        write_json(Path(args.out), rp.comparison_rows(paired, loops))
    return 0


def make_parser() -> argparse.ArgumentParser:
    from nat_ray.reformat import MODES

    parser = argparse.ArgumentParser(prog="nat-ray", description="Negative-Aware Training for LLM agents on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_tool_commands(sub)

    p = sub.add_parser("import-nat", help="the paper's trajectory files -> a trajectories dataset")
    p.add_argument("--task", required=True)
    p.add_argument("--questions", required=True, help="the task's question file (.json or .jsonl)")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--model", default=None, help="policy that made the files (default: from the file name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("files", nargs="+", metavar="TRAJ.json")
    p.set_defaults(func=cmd_import_nat)

    p = sub.add_parser("build", help="a training set (vanilla / nut / nat / nat-graded / dpo / kto) from trajectories")
    p.add_argument("--trajectories", required=True, help="trajectories dataset folder")
    p.add_argument("--prompts", required=True, help="the paper's prompt templates file")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--template", default=None, help="template name (default by mode)")
    p.add_argument("--pos-num", required=True, type=_count, help="first N positives (or 'all')")
    p.add_argument("--neg-num", required=True, type=_count, help="M negatives sampled with --seed (or 'all')")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--selection",
        choices=["paper", "paired"],
        default="paper",
        help="paper: first N positives + sampled negatives; paired: N questions with both kinds, one of each",
    )
    p.add_argument("--out", required=True, help="PATH.jsonl, or a folder for a Parquet dataset")
    p.add_argument("--negatives-from", default=None, help="take the negatives from this trajectories dataset instead")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("rollout", help="run agent episodes into a trajectories dataset (resumable)")
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("train", help="fine-tune on a training set (Ray Train + DeepSpeed ZeRO-3)")
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a policy on test sets (or score an existing trajectories dataset)")
    p.add_argument("--config", default=None)
    p.add_argument("--trajectories", default=None, help="score this trajectories dataset, no generation")
    p.add_argument("--out", default=None, help="with --trajectories: folder for metrics.json")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("pipeline", help="collect -> build -> train -> eval -> report, from one config (resumable)")
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--no-progress", action="store_true", help="no progress bars; the stage lines still print")
    p.add_argument(
        "--plan", action="store_true", help="print what each comparison can detect and the cost; run nothing"
    )
    p.add_argument(
        "--plan-from",
        metavar="RUN_DIR",
        help="--plan with the discordant shares and eval rate of another run folder's report (e.g. the main job's)",
    )
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("compare", help="two evals of the same questions, paired (e.g. one model under two hints)")
    p.add_argument("a", metavar="EVAL_A", help="an eval's output folder (<eval.out>: one folder per data set)")
    p.add_argument("b", metavar="EVAL_B")
    p.add_argument("--names", nargs=2, metavar=("A", "B"), help="row names (default: the folders' names)")
    p.add_argument(
        "--seed",
        nargs=2,
        action="append",
        metavar=("EVAL_A", "EVAL_B"),
        help="the same two recipes under another training seed (repeat it): pooled over the seeds, seeds random too",
    )
    p.add_argument("--out", metavar="FILE", help="also write the comparisons as JSON")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="tables and plots of a pipeline run folder")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "--with",
        dest="also",
        metavar="RUN_DIR",
        action="append",
        help="another run folder whose NUT / NAT sweep points join this run's in the gain-over-vanilla plot "
        "(e.g. the session study's 0.5x beside the negatives study's 1x and 4x)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "pool-seeds",
        help="one report over pipeline runs of the same study that differ in their training seed (train.seed): "
        "rows <variant>-seed<N>, mean ± sd, and every comparison pooled over the seeds",
    )
    p.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="pipeline run folders, one per training seed")
    p.add_argument("--out", required=True, metavar="DIR", help="where the pooled report goes")
    p.set_defaults(func=cmd_pool_seeds)

    p = sub.add_parser(
        "verdict",
        help="the comparisons a file names, over variants in any run folders under their training seeds: seeds "
        "random, Holm over every row (configs/verdict/math.yaml)",
    )
    p.add_argument("file", metavar="FILE", help="the verdict file: runs (seed: folder), variants, comparisons")
    p.add_argument("--out", required=True, metavar="DIR", help="where README.md, comparisons.json and verdict.json go")
    p.set_defaults(func=cmd_verdict)

    add_setup_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except NatRayError as exc:
        print(f"nat-ray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        loc, msg = first_validation_error(exc)
        print(f"nat-ray {args.command}: error: {loc}: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
