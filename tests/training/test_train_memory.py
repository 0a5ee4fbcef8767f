"""The shipped SmolLM2 train config fits the memory its header states; a run that cannot fit ends in one line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.storage import read_examples, write_jsonl
from nat_ray.training.trainer import run_train
from tests.conftest import run_cli, strategyqa_nat_set

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs/train_smollm2_strategyqa_nat.yaml"
pytestmark = pytest.mark.slow


def header_budget_gb(path: Path) -> float:
    """The peak memory per worker the config's header promises (``# ... peak memory ... N GB per worker``)."""
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    match = re.search(r"peak memory[^\n]*?([\d.]+) GB per worker", header)
    assert match, f"{path.name}: the header does not state the peak memory per worker"
    return float(match.group(1))


@pytest.fixture(scope="module")
def longest_examples(tmp_path_factory, smollm2: Path, strategyqa_files) -> Path:
    """The longest StrategyQA NAT examples (up to ~1,560 SmolLM2 tokens): the worst case for the config's memory."""
    from transformers import AutoTokenizer

    from nat_ray.training.tokenize import encode

    work = tmp_path_factory.mktemp("nat")
    full = strategyqa_nat_set(strategyqa_files, work, work / "nat.jsonl", pos=-1, neg=-1)
    tok = AutoTokenizer.from_pretrained(smollm2)
    examples = sorted(read_examples(full), key=lambda e: -len(encode(tok, e, 4096).input_ids))[:16]
    out = work / "longest.jsonl"
    write_jsonl(out, (e.to_row() for e in examples))
    return out


# one step of 4 sequences of ~1,500 tokens: on a CPU without bf16 matmul (float32 on an AVX2-only AMD EPYC, beside
# another xdist worker) it ran past the default 600 s (docs/benchmarks.md, "Which CPU")
@pytest.mark.timeout(1800)
def test_shipped_smollm2_config_stays_under_its_stated_peak_memory(
    tmp_path: Path, smollm2: Path, longest_examples: Path, ray_local
) -> None:
    shipped = load_config(SHIPPED).train
    assert shipped is not None
    budget = header_budget_gb(SHIPPED)
    per_step = shipped.micro_batch_size * shipped.num_workers  # one micro-batch per worker per step: same peak
    cfg = load_config(
        SHIPPED,
        [
            f"out={tmp_path}",
            f"train.model={smollm2}",
            f"train.data={longest_examples}",
            f"train.global_batch_size={per_step}",
            "train.max_steps=1",  # the peak comes with the first step: its activations, gradients and AdamW states
            "train.log_every=1",
        ],
    )
    summary = run_train(cfg, progress=False)
    peak = summary["peak_rss_gb_per_worker"]
    assert summary["step"] == 1 and summary["data"]["longest"] > 1400
    assert 1.0 < peak < budget, f"peak {peak:.2f} GB per worker, header promises under {budget} GB"
    saved = json.loads((Path(summary["out"]) / "nat_ray_train.json").read_text())
    assert saved["final_loss"] > 0 and saved["tokens_seen"] > 2 * 1400 and saved["wall_seconds"] > 0
    # one copy of the model: Ray Train's resumable checkpoints are gone once the run is complete
    assert not (tmp_path / "ray_train").exists()
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1


def _train_cli(out: Path, model: Path, data: Path, *overrides: str, env: dict | None = None):  # type: ignore[no-untyped-def]
    """``nat-ray train`` with the shipped config on ``data``, as a user types it."""
    args = ["train", "--config", str(SHIPPED), f"out={out}", f"train.model={model}", f"train.data={data}"]
    return run_cli(*args, *overrides, env=env)


def test_a_run_that_cannot_fit_is_refused_in_one_line(tmp_path: Path, smollm2: Path, longest_examples: Path) -> None:
    r = _train_cli(
        tmp_path,
        smollm2,
        longest_examples,
        "train.micro_batch_size=16",  # ~30 GB estimated for one worker: more than this machine has
        "train.global_batch_size=16",
        "train.gradient_checkpointing=false",
    )
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("nat-ray train: error: this run") and "GB per worker" in last
    for knob in ("train.micro_batch_size", "train.max_length", "train.gradient_checkpointing=true"):
        assert knob in last
    assert "Traceback" not in r.stderr and not (tmp_path / "checkpoint").exists()


def test_a_worker_killed_for_memory_ends_in_one_line(tmp_path: Path, smollm2: Path, longest_examples: Path) -> None:
    """Ray's own memory monitor, told that almost any use is too much, kills the training workers."""
    env = {"RAY_memory_usage_threshold": "0.05", "RAY_memory_monitor_refresh_ms": "100"}
    r = _train_cli(
        tmp_path,
        smollm2,
        longest_examples,
        "train.global_batch_size=4",  # one micro-batch of the shipped size
        "train.max_steps=1",
        "train.max_failures=0",
        env=os.environ | env,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("nat-ray train: error: a training worker was killed for running out of memory"), last
    assert "train.micro_batch_size" in last and "Traceback" not in r.stderr
