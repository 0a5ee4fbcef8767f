"""The `nat-ray` command contract (DESIGN.md), through the installed console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


def test_calc_one_expression() -> None:
    r = run_cli("calc", "6 * 2/3")
    assert (r.returncode, r.stdout) == (0, "4\n")
    r = run_cli("calc", "1/3 * 2")
    assert r.stdout == "2/3\n"
    r = run_cli("calc", "__import__('os').system('echo pwned')")
    assert r.returncode == 0 and r.stdout.startswith("Error: ") and "pwned" not in r.stdout


def test_calc_json_lines() -> None:
    lines = [{"expression": "2^10"}, {"expression": "sqrt(2)"}, {"expression": "9**9**9**9"}]
    r = run_cli("calc", stdin="".join(json.dumps(x) + "\n" for x in lines))
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["expression"] for o in out] == ["2^10", "sqrt(2)", "9**9**9**9"]
    assert [o["observation"] for o in out[:2]] == ["1024", "1.41421"]
    assert out[2]["observation"].startswith("Error: ")


def test_calc_bad_input_names_the_line() -> None:
    r = run_cli("calc", stdin='{"expression": "1+1"}\n{"expr": "2"}\n')
    assert r.returncode == 2 and "<stdin>:2: missing key 'expression'" in r.stderr and r.stdout == ""
    r = run_cli("calc", stdin='{"expression": "1+1"}\nnot json\n')
    assert r.returncode == 2 and "<stdin>:2: malformed JSON" in r.stderr and r.stdout == ""


@pytest.mark.parametrize(
    ("task", "lines", "expected"),
    [
        (
            "gsm8k",
            [{"gt": "x\n#### 1,000", "pred": "1000"}, {"gt": "#### 18", "pred": "18.0"}],
            [{"reward": True}, {"reward": False}],
        ),
        ("ASDiv", [{"gt": "9", "pred": "9"}], [{"reward": True}]),
        ("SVAMP", [{"gt": "#### 51", "pred": "51"}], [{"reward": True}]),
        ("MultiArith", [{"gt": "#### 39", "pred": "38"}], [{"reward": False}]),
        (
            "StrategyQA",
            [{"gt": True, "pred": "Yes"}, {"gt": False, "pred": "yes"}],
            [{"reward": True}, {"reward": False}],
        ),
        (
            "hotpotqa",
            [{"gt": "Richard Strauss", "pred": "richard strauss"}, {"gt": "yes", "pred": "no"}],
            [{"reward": True, "em": True, "f1": 1.0}, {"reward": False, "em": False, "f1": 0.0}],
        ),
    ],
)
def test_grade(task: str, lines: list, expected: list) -> None:
    r = run_cli("grade", "--task", task, stdin="".join(json.dumps(x) + "\n" for x in lines))
    assert r.returncode == 0, r.stderr
    assert [json.loads(x) for x in r.stdout.splitlines()] == expected


def test_grade_numeric_mode_and_errors() -> None:
    r = run_cli("grade", "--task", "gsm8k", "--numeric", stdin='{"gt": "#### 18", "pred": "$18"}\n')
    assert json.loads(r.stdout) == {"reward": True}
    r = run_cli("grade", "--task", "mmlu", stdin="")
    assert r.returncode == 2 and "unknown task 'mmlu'" in r.stderr
    r = run_cli("grade", "--task", "gsm8k", stdin='{"gt": "1"}\n')
    assert r.returncode == 2 and "<stdin>:1: missing key 'pred'" in r.stderr


def _import(tmp_path: Path, f: dict, *files: str, task: str = "StrategyQA", out: str = "traj"):
    return run_cli(
        "import-nat", "--task", task, "--questions", str(f["questions"]), "--out", str(tmp_path / out), *files
    )


def _build(tmp_path: Path, f: dict, out: str, **opts: str):
    args = {"trajectories": str(tmp_path / "traj"), "prompts": str(f["prompts"]), "mode": "nat", "pos-num": "1"}
    args |= {"neg-num": "1", "out": str(tmp_path / out)} | {k.replace("_", "-"): v for k, v in opts.items()}
    return run_cli("build", *[x for k, v in args.items() for x in (f"--{k}", v)])


def test_import_then_build(tmp_path: Path, strategyqa_files) -> None:
    f = strategyqa_files
    r = _import(tmp_path, f, str(f["positive"]), str(f["negative"]))
    assert r.returncode == 0, r.stderr
    counts = {"trajectories": 2333, "positive": 1070, "negative": 1263, "error": 0}
    assert json.loads(r.stdout) == {"out": str(tmp_path / "traj"), **counts}
    r = _build(tmp_path, f, "nat.jsonl", pos_num="1070", neg_num="1263")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (tmp_path / "nat.jsonl").read_text().splitlines()]
    assert len(rows) == 2333 and set(rows[0]) == {"id", "label", "messages"}
    assert set(rows[0]["messages"][0]) == {"role", "content", "loss"}
    manifest = json.loads((tmp_path / "nat.jsonl.manifest.json").read_text())
    assert manifest["config"]["template"] == "zero-shot-target-aware" and manifest["config"]["seed"] == 42
    # another seed samples other negatives
    r1 = _build(tmp_path, f, "s1.jsonl", pos_num="0", neg_num="5", seed="1")
    r42 = _build(tmp_path, f, "s42.jsonl", pos_num="0", neg_num="5")
    assert r1.returncode == r42.returncode == 0
    assert (tmp_path / "s1.jsonl").read_text() != (tmp_path / "s42.jsonl").read_text()
    # import refuses to clobber an existing dataset
    r = _import(tmp_path, f, str(f["positive"]))
    assert r.returncode == 2 and "already exists" in r.stderr


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"mode": "best"}, "invalid choice: 'best'"),
        ({"template": "zero-shot-target-aware-nope"}, "unknown template 'zero-shot-target-aware-nope'"),
        ({"pos_num": "-3"}, "non-negative"),
        ({"neg_num": "99999"}, "only 1263 negatives"),
        ({"selection": "paired", "pos_num": "430"}, "paired: 430 questions asked but only 429 have both"),
        ({"selection": "paired", "pos_num": "3", "neg_num": "4"}, "--neg-num 4 is more than the 3 pairs drawn"),
        ({"selection": "random"}, "invalid choice: 'random'"),
    ],
)
def test_build_errors_leave_no_output(tmp_path: Path, strategyqa_files, opts: dict, message: str) -> None:
    f = strategyqa_files
    assert _import(tmp_path, f, str(f["negative"]), str(f["positive"])).returncode == 0
    r = _build(tmp_path, f, "o.jsonl", **opts)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_import_errors(tmp_path: Path, strategyqa_files) -> None:
    f = strategyqa_files
    r = _import(tmp_path, f, str(f["positive"]), task="hotpotqa", out="o")
    # StrategyQA files under another task: the yes/no ground truths give it away
    assert r.returncode == 2 and "train.jsonl:1: field 'answer': a yes/no answer (True), but task hotpotqa" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    r = _import(tmp_path, f, str(bad), out="o")
    assert r.returncode == 2 and f"{bad}:1: malformed JSON" in r.stderr
    assert not (tmp_path / "o").exists()
    r = _import(tmp_path, f, str(bad), task="chess", out="o")
    assert r.returncode == 2 and "unknown task 'chess'" in r.stderr


def test_search_build_index_then_query(tmp_path: Path, minilm: Path) -> None:
    config = tmp_path / "search.yaml"
    config.write_text(
        f"out: {tmp_path}/run\n"
        "tools:\n"
        "  search:\n"
        f"    kind: local\n    index: {{path: {tmp_path}/index, sources: [strategyqa]}}\n"
        f"    embed_model: {minilm}\n"
    )
    built = run_cli("search", "build-index", "--config", str(config))
    assert built.returncode == 0, built.stderr
    meta = json.loads(built.stdout)
    assert meta["counts"] == {"strategyqa": meta["passages"]} and meta["passages"] > 3000
    asked = run_cli(
        "search", "query", "--config", str(config), "-q", "Genghis Khan children", "-q", "Genghis Khan children"
    )
    assert asked.returncode == 0, asked.stderr
    first, second = (json.loads(line) for line in asked.stdout.splitlines())
    assert first["observation"].startswith(" #1: ") and first == second
    assert json.loads(asked.stderr.strip().splitlines()[-1])["cache"]["misses"] == 1
    again = run_cli("search", "query", "--config", str(config), "-q", "Genghis Khan children")
    assert json.loads(again.stderr.strip().splitlines()[-1])["cache"]["hits"] == 1  # the file cache, a new process


def test_search_errors(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(f"tools:\n  search: {{kind: local, index: {{path: {tmp_path}/none}}, embed_model: null}}\n")
    missing = run_cli("search", "query", "--config", str(config), "-q", "x")
    assert missing.returncode == 2 and "nat-ray search build-index" in missing.stderr
    config.write_text("tools:\n  search: {kind: serper, serper: {api_key_env: NAT_RAY_TEST_NO_SUCH_KEY}}\n")
    nokey = run_cli("search", "query", "--config", str(config), "-q", "x")
    assert nokey.returncode == 2 and "set $NAT_RAY_TEST_NO_SUCH_KEY" in nokey.stderr


_RAY_ERRORS_THEN_SUMMARY = """
import threading
import time
import ray._private.worker as worker
from ray._private.utils import publish_error_to_driver
from nat_ray.ray_init import init_ray, leave_ray

received = []
arrived = threading.Condition()
printer = worker.print_to_stdstream


def counting_printer(data, ignore_prefix):  # the driver's error listener calls it once per message it receives
    printer(data, ignore_prefix)
    with arrived:
        received.append(data)
        arrived.notify_all()


def wait_for(count, seconds):
    with arrived:
        return arrived.wait_for(lambda: len(received) >= count, timeout=seconds)


def publish():  # as a lost node's raylet reports itself
    publish_error_to_driver("node_lost", "a node was lost (test message)", worker.global_worker.gcs_client)


worker.print_to_stdstream = counting_printer
init_ray("local")
# The listener subscribes in a thread of its own, so a message published before it has subscribed is never seen:
# publish until one arrives, however slow the machine, instead of sleeping a fixed time and hoping.
deadline = time.monotonic() + 90
publish()
while not wait_for(1, 1.0):
    assert time.monotonic() < deadline, "no error message reached the driver in 90 s"
    publish()
seen = len(received)
for _ in range(2):  # repeats of a line Ray has printed are held back, to be printed as "[repeated 2x]"
    publish()
assert wait_for(seen + 2, 90), "the repeated error messages did not reach the driver in 90 s"
leave_ray()
print('{"summary": true}', flush=True)
"""


def test_summary_stays_stdouts_last_line_when_ray_reports_errors() -> None:
    """Ray prints the errors it saw to the driver's stdout, the repeated ones when it disconnects: a command leaves Ray
    before printing its summary, so a script reading the last line gets it (the autoscaling test once did not)."""
    import os
    import subprocess
    import sys

    # Ray holds repeats back for a 5 s window and prints them plainly if the next one comes later: a loaded machine can
    # take that long between two messages, so the window is widened to what the test is about, the flush at disconnect
    env = {**os.environ, "RAY_DEDUP_LOGS_AGG_WINDOW_S": "600"}
    r = subprocess.run(
        [sys.executable, "-c", _RAY_ERRORS_THEN_SUMMARY], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert any("a node was lost (test message)" in line and "[repeated" in line for line in lines[:-1]), r.stdout
    assert json.loads(lines[-1]) == {"summary": True}
