"""The `nat-ray` commands that try the parts by hand: `calc`, `grade`, `show`, `chat`.

Part of the CLI (``nat_ray.cli`` registers them through :func:`add_tool_commands`); none of them runs a stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from nat_ray.errors import InputError
from nat_ray.storage import parse_jsonl


def _stdin_records(required: Sequence[str]) -> list[dict]:
    records = []
    for lineno, rec in parse_jsonl(sys.stdin, "<stdin>"):
        if not isinstance(rec, dict):
            raise InputError(f"<stdin>:{lineno}: expected a JSON object")
        for key in required:
            if key not in rec:
                raise InputError(f"<stdin>:{lineno}: missing key {key!r}")
        records.append(rec)
    return records


def cmd_calc(args: argparse.Namespace) -> int:
    from nat_ray.tools.calculator import Calculator

    if args.expression is None:
        records = _stdin_records(["expression"])
        for i, rec in enumerate(records, 1):
            if not isinstance(rec["expression"], str):
                raise InputError(f"<stdin> record {i}: 'expression' must be a string")
    with Calculator(timeout_s=args.timeout) as calc:
        if args.expression is not None:
            print(calc(args.expression))
            return 0
        for rec in records:
            print(json.dumps({"expression": rec["expression"], "observation": calc(rec["expression"])}))
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from nat_ray.tasks import get_task

    task = get_task(args.task)
    records = _stdin_records(["gt", "pred"])
    rows = []
    for i, rec in enumerate(records, 1):
        pred = rec["pred"]
        if pred is not None and not isinstance(pred, str):
            pred = str(pred)
        try:
            grade = task.grade(rec["gt"], pred, numeric=args.numeric)
        except ValueError as exc:
            raise InputError(f"<stdin> record {i}: field 'gt': {exc}") from None
        row: dict = {"reward": grade.reward}
        if task.family == "qa":
            row |= {"em": grade.em, "f1": grade.f1}
        rows.append(row)
    for row in rows:
        print(json.dumps(row))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nat_ray.evaluation.show import show
    from nat_ray.storage import read_trajectories

    print(show(read_trajectories(args.dir), args.label, args.finish_reason, args.n))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from nat_ray.chat import build_chat

    search = None
    if args.config is not None:
        from nat_ray.config import load_config

        search = load_config(args.config).tools.search
    agent = build_chat(
        args.model, args.task, args.hint, search, args.data_dir, args.temperature, args.max_tokens, args.template
    )
    tty = sys.stdin.isatty()

    def emit(text: str) -> None:
        print(text, flush=True)

    def prompt() -> None:
        if tty:
            print("\nQuestion (empty line or Ctrl-D to quit)> ", end="", flush=True)

    import asyncio

    asyncio.run(agent.loop(sys.stdin, emit, prompt))
    return 0


def add_tool_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calc", help="the safe SymPy calculator")
    p.add_argument("expression", nargs="?", help="an expression; without it, JSON lines on stdin")
    p.add_argument("--timeout", type=float, default=5.0, help="hard limit per expression, seconds (default 5)")
    p.set_defaults(func=cmd_calc)

    p = sub.add_parser("grade", help="grade predictions against ground truths (JSON lines on stdin)")
    p.add_argument("--task", required=True)
    p.add_argument("--numeric", action="store_true", help="math: compare as numbers (18.0 == $18); not the paper's")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("show", help="counts and readable transcripts of a trajectories dataset")
    p.add_argument("dir", help="trajectories dataset folder")
    p.add_argument("--label", choices=["positive", "negative", "error"], default=None)
    p.add_argument("--finish-reason", choices=["finish", "max_turns", "malformed_action", "error"], default=None)
    p.add_argument("-n", type=int, default=3, help="episodes to print (default 3)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("chat", help="type a question, watch the agent use the real tools")
    p.add_argument("--model", required=True, help="a model folder (a checkpoint of nat-ray train) or smollm2")
    p.add_argument("--task", required=True)
    p.add_argument(
        "--hint",
        choices=["auto", "correct", "incorrect", "none"],
        default="auto",
        help="auto: the correct hint for a NAT-trained checkpoint, else none",
    )
    p.add_argument("--template", default=None, help="prompt template (default: by --hint; one-shot helps small models)")
    p.add_argument("--config", default=None, help="a config whose tools.search the search tasks use")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--max-tokens", type=int, default=512)
    p.set_defaults(func=cmd_chat)
