"""The benchmark scripts keep running (their figures are measured by hand and recorded in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_quick(script: str, out: Path, *args: str, timeout: int = 600) -> tuple[dict, str]:
    """Run ``benchmarks/<script> --quick --json out [args]``; its JSON result and its stdout."""
    r = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--quick", "--json", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text()), r.stdout


@pytest.mark.slow
def test_calculator_benchmark_quick(tmp_path: Path) -> None:
    result, stdout = _run_quick("calculator.py", tmp_path / "calc.json")
    assert result["p50_ratio"] > 0 and result["expressions"] == 2000
    assert {row["mismatches_vs_plain"] for row in result["calculators"].values()} == {0}
    assert "p50_ratio" in stdout


def test_cpu_benchmark_names_the_precision_and_the_matmul_rates(tmp_path: Path) -> None:
    result, stdout = _run_quick("cpu.py", tmp_path / "cpu.json", "--steps", "0", timeout=300)
    assert result["auto"] in ("float32", "bfloat16") and result["cores"] >= 1
    assert len(result["gflops"]) == 4 and all(one > 0 and many > 0 for one, many in result["gflops"].values())
    assert "auto precision:" in stdout


@pytest.mark.slow
def test_search_benchmark_quick(tmp_path: Path, minilm: Path) -> None:
    result, _ = _run_quick("search.py", tmp_path / "search.json", timeout=900)
    assert set(result["recall_at_3"]) == {"bm25", "bm25+minilm", "bm25+mpnet"}
    assert all(0 < v <= 1 for v in result["recall_at_3"].values())
    assert result["queries_per_s_per_actor"]["batched"] > 0 and result["cache_stats"]["hits"] == 40


@pytest.mark.slow
def test_eval_benchmark_quick(tmp_path: Path, smollm2: Path) -> None:
    # the script keeps running, at a smoke size (short replies): the paper loop and the default engine (the headline
    # ratio) beside the transformers engine, over 2 rounds; the docs run every engine at the full size
    args = (
        "--engines",
        "cached",
        "--rounds",
        "2",
        "--episodes",
        "8",
        "--loop-episodes",
        "2",
        "--conversations",
        "4",
        "--latency",
        "0.2",
        "--max-tokens",
        "32",
        "--replay-tokens",
        "24",
    )
    result, stdout = _run_quick("eval.py", tmp_path / "eval.json", *args, timeout=900)
    assert result["speedup_vs_sequential"] > 1 and result["engine_speedup"] > 0 and result["replay_speedup"] > 0
    engine, replay = result["engine"], result["replay"]
    rows = {r["name"]: r for r in engine["engines"]}
    assert set(rows) == {"paper_loop", "openvino", "cached"} and engine["default"] == "openvino"
    assert rows["paper_loop"]["episodes"] == 2 and rows["cached"]["episodes"] == rows["openvino"]["episodes"] == 8
    assert rows["cached"]["dtype"] in ("bfloat16", "float32") and rows["openvino"]["dtype"] == "openvino auto"
    assert result["default_vs_transformers"] > 0 and "default_vs_transformers" in stdout
    assert rows["cached"]["cache"]["reused_tokens"] > 0  # the task prompt is prefilled once, then shared
    cached = next(r for r in replay["engines"] if r["name"] == "cached")
    assert cached["cache"]["reused_tokens"] > cached["cache"]["prompt_tokens"] / 2  # turns reuse their history
    assert cached["cache"]["pinned_rows"] > 0  # and decode on one copy of the shared task prompt
    assert [e["name"] for e in result["engines"]] == ["paper_loop", "openvino", "cached"]
    # each engine ran once per round (the paper loop once), its figure the mean of its runs
    for part in (engine, replay):
        by = {r["name"]: r for r in part["engines"]}
        assert "rounds_tokens_per_s" not in by["paper_loop"] and part["rounds"] == 2
        for name in ("openvino", "cached"):
            runs = by[name]["rounds_tokens_per_s"]
            assert len(runs) == 2 and by[name]["tokens_per_s"] == pytest.approx(sum(runs) / 2)
    assert "engine_speedup" in stdout and "speedup_vs_sequential" in stdout


def test_engine_rows_alternate_their_order_over_rounds() -> None:
    from benchmarks.engine_rows import schedule

    names = ["paper_loop", "openvino", "cached", "openvino_ir"]
    assert schedule(names, 1) == names
    assert schedule(names, 3) == [*names, "openvino_ir", "cached", "openvino", "openvino", "cached", "openvino_ir"]


@pytest.mark.slow
def test_decode_step_benchmark_quick(tmp_path: Path, smollm2: Path) -> None:
    result, stdout = _run_quick("decode_step.py", tmp_path / "step.json", "--tokens", "6", timeout=600)
    by = {(r["engine"], r["rows"]): r for r in result["results"]}
    assert set(by) == {(e, n) for e in ("cached", "openvino_float32") for n in (1, 2)}
    for engine in ("cached", "openvino_float32"):
        one, two = by[engine, 1], by[engine, 2]
        assert two["prompt_tokens"] > one["prompt_tokens"] > 100  # the replay's histories, not a toy prompt
        assert all(r["prefill_tokens_per_s"] > 0 and r["step_ms"] > 0 and r["steps"] > 0 for r in (one, two))
    assert set(result["step_vs_openvino"]) == {"1", "2"} and "decode step" in stdout


@pytest.mark.slow
def test_openvino_stop_benchmark_quick(tmp_path: Path, smollm2: Path) -> None:
    result, stdout = _run_quick("openvino_stop.py", tmp_path / "stop.json", timeout=600)
    assert [r["name"] for r in result["rows"]] == ["loop_stop", "genai_stop"]
    assert all(r["episodes"] == 4 and r["episodes_per_s"] > 0 for r in result["rows"])
    assert 0 <= result["same_transcripts"] <= 4 and result["loop_over_genai"] > 0 and "same transcripts" in stdout


@pytest.mark.slow
def test_pipeline_benchmark_quick(tmp_path: Path, smollm2: Path) -> None:
    result, stdout = _run_quick("pipeline.py", tmp_path / "pipe.json", timeout=900)
    assert result["overhead_ratio"] > 0 and result["pipeline_s"] > 0
    assert set(result["stages_s"]) == {"collect", "build nat", "train nat", "eval nat", "eval teacher", "report"}
    assert "overhead_ratio" in stdout


@pytest.mark.slow
def test_scaling_benchmark_quick(tmp_path: Path) -> None:
    result, stdout = _run_quick("scaling.py", tmp_path / "scaling.json")
    assert result["scale_efficiency"] > 0 and "scale_efficiency" in stdout
    one, three = result["one_node"], result["three_nodes"]
    assert (one["nodes"], three["nodes"]) == (1, 3) and three["episodes"] == 3 * one["episodes"]
    assert one["errors"] == three["errors"] == 0
