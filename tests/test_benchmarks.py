"""The benchmark scripts keep running (their figures are measured by hand and recorded in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_calculator_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "calc.json"
    r = subprocess.run(
        [sys.executable, "benchmarks/calculator.py", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["p50_ratio"] > 0 and result["expressions"] == 2000
    assert {row["mismatches_vs_plain"] for row in result["calculators"].values()} == {0}
    assert "p50_ratio" in r.stdout


@pytest.mark.slow
def test_search_benchmark_quick(tmp_path: Path, minilm: Path) -> None:
    out = tmp_path / "search.json"
    r = subprocess.run(
        [sys.executable, "benchmarks/search.py", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert set(result["recall_at_3"]) == {"bm25", "bm25+minilm", "bm25+mpnet"}
    assert all(0 < v <= 1 for v in result["recall_at_3"].values())
    assert result["queries_per_s_per_actor"]["batched"] > 0 and result["cache_stats"]["hits"] == 80
