"""Iterated NAT beside DPO and KTO, in a pipeline process killed (SIGKILL) inside round 2 and started again. Round 1
trains vanilla, NAT, DPO and KTO on the same collected trajectories (``build.selection: paired``; DPO and KTO from the
vanilla model; KTO under ZeRO-3 through ``study.train_by_mode``); round 2 rolls out the train questions with round 1's
NAT model, builds NAT's next set from its own labelled episodes (+ the collected selection: ``round_mix``) and trains
from round 1's model. Finished stages are never redone; the interrupted rollout keeps what it wrote, and every episode
is in the output exactly once."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from nat_ray.records import read_stage
from tests.conftest import assert_exactly_once, run_until_killed

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _complete(folder: Path) -> bool:
    stage = read_stage(folder)
    return stage is not None and stage.complete


@pytest.mark.timeout(1200)  # ~6.5 min beside another xdist worker; its two pipeline runs have 900 s limits of their own
def test_two_rounds_of_nat_beside_dpo_and_kto_resume_inside_round_two(
    tmp_path: Path, smollm2: Path, search_index: Path
) -> None:
    from tests.training.test_train_ray import tiny_llama_folder

    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    run = tmp_path / "run"
    args = [f"out={run}", f"train.model={model}", f"tools.search.index.path={search_index}", "ray_address=local"]
    args += ["study.modes=[vanilla, nat, dpo, kto]", "study.rounds=2", "study.round_mix=true", "study.base=false",
             "study.teacher=false", "study.train_by_mode={kto: {strategy: deepspeed}}", "eval.limit=2",
             "build.neg_num=8", "build.selection=paired", "train.drop_no_loss=true"]  # fmt: skip
    # round 2's rollout: 4 train questions x 2 temperatures, one episode at a time, each written as it ends
    args += ["rollout={task: strategyqa, limit: 4, temperatures: [0.2, 0.7], max_turns: 2, episodes_per_worker: 1, "
             "flush_every: 1}"]  # fmt: skip
    # --no-progress: the bars go, the stage lines this test reads stay (they are the run's log)
    config = str(REPO / "configs/ci_pipeline.yaml")
    cmd = [sys.executable, "-m", "nat_ray.cli", "pipeline", "--no-progress", "--config", config, *args]

    # 1. killed inside a stage: round 2's rollout, after some of its episodes are written
    rolled = run / "rounds/nat-r2"
    run_until_killed(cmd, lambda: len(list(rolled.glob("part-*.parquet"))) >= 2, timeout=900)
    partial = read_stage(rolled)
    assert partial is not None and not partial.complete and _complete(run / "models/nat")
    round1 = ("trajectories", "sets/vanilla", "models/vanilla", "models/nat", "models/dpo", "models/kto", "eval/nat")
    done = {f: read_stage(run / f) for f in round1}
    assert all(s is not None and s.complete for s in done.values())

    # 2. started again: runs to the end, resuming the rollout where it stopped
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (
        "pipeline: rollout nat-r2: resuming" in r.stdout and "pipeline: train vanilla: up to date, skipped" in r.stdout
    )
    for folder, stage in done.items():  # round 1 is not redone
        assert read_stage(run / folder) == stage, folder
    episodes = assert_exactly_once(rolled, 8)
    assert {t.source for t in episodes} == {"round2:nat"} and {t.model for t in episodes} == {str(run / "models/nat")}

    info = json.loads((run / "report/run.json").read_text())
    rows = {v["name"]: v for v in info["variants"]}
    assert list(rows) == ["vanilla", "nat", "dpo", "kto", "nat-r2"]
    assert (rows["nat-r2"]["round"], rows["nat-r2"]["previous"]) == (2, "nat")
    r2 = json.loads((run / "models/nat-r2/nat_ray_train.json").read_text())
    assert r2["config"]["train"]["model"] == str(run / "models/nat")  # round_init: previous
    examples = [json.loads(x) for x in (run / "sets/nat-r2/train.jsonl").read_text().splitlines()]
    negatives = sum(t.label.value == "negative" for t in episodes)
    assert len(examples) == 16 + sum(t.label.value != "error" for t in episodes)  # the collected 8 + 8, and its own
    assert sum(e["label"] == "negative" for e in examples) == 8 + negatives
    for name, strategy in (("dpo", "ddp"), ("kto", "deepspeed")):  # from the vanilla model, which is the reference
        record = json.loads((run / f"models/{name}/nat_ray_train.json").read_text())
        train = record["config"]["train"]
        assert train["objective"] == name and train["model"] == str(run / "models/vanilla")
        assert train["strategy"] == strategy and record["data"]["reference"]["computed"] is True
        logged = [json.loads(x) for x in (run / f"models/{name}/metrics.jsonl").read_text().splitlines()]
        losses = [m["loss"] for m in logged]
        if name == "dpo":  # the policy is its reference at step 1: every margin 0, the loss log 2
            assert losses[0] == pytest.approx(math.log(2), abs=0.02)
            assert logged[0]["reward_margin"] == pytest.approx(0, abs=0.05) and 0 <= logged[0]["reward_accuracy"] <= 1
        else:  # log-ratios and the KL estimate 0: each completion's loss is half its class weight
            assert 0.2 < losses[0] < 1.0
            rewards = [m[k] for m in logged for k in ("reward_desirable", "reward_undesirable") if k in m]
            assert rewards and rewards[0] == pytest.approx(0, abs=0.05) and "kl" in logged[0]
    pairs = [json.loads(x) for x in (run / "sets/dpo/train.jsonl").read_text().splitlines()]
    assert len(pairs) == 8 and all(set(p) == {"id", "prompt", "chosen", "rejected"} for p in pairs)
    # build.selection paired: round 1's sets hold the same 8 questions, one positive and one negative each
    vanilla = [json.loads(x) for x in (run / "sets/vanilla/train.jsonl").read_text().splitlines()]
    nat = [json.loads(x) for x in (run / "sets/nat/train.jsonl").read_text().splitlines()]
    questions = [p["id"] for p in pairs]
    assert len(set(questions)) == 8 and questions == [e["id"] for e in vanilla] == [e["id"] for e in nat[8:]]
    # round 2's mix is round 1's paired selection: its positives first, then its negatives among the others (sampled)
    assert [e["id"] for e in examples[:8]] == questions
    assert all(any(e["id"] == q and e["label"] == "negative" for e in examples[8:]) for q in questions)
    paired = {(c["a"], c["b"]) for c in json.loads((run / "report/comparisons.json").read_text())}
    assert {("dpo", "vanilla"), ("kto", "vanilla"), ("nat", "dpo"), ("nat", "kto")} <= paired
    assert "rounds.png" in info["plots"] and (run / "report/rounds.png").stat().st_size > 1000
    assert "init" in read_stage(run / "models/dpo").inputs  # retrained if the vanilla model changes
