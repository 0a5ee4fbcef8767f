"""The whole pipeline for real on CPU: import, build two variants, two training steps each of a tiny model, eval of
every variant and the base model through the engine with BM25 search, the teacher's row, the report; then a changed
``train.lr`` redoes train, eval and report but not collect or build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.pipeline.driver import run_pipeline
from nat_ray.records import read_stage

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _stamp(folder: Path) -> str:
    stage = read_stage(folder)
    assert stage is not None and stage.complete, folder
    return stage.started_at or ""


def _check_tracked(run: Path) -> None:
    """The pipeline's MLflow runs: a parent, a child per stage, training loss per step, eval metrics, the report."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("nat-ray").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and parents[0].info.run_name == "run"
    parent = parents[0]
    assert parent.data.params["train.max_steps"] == "2" and parent.data.params["tracking.kind"] == "mlflow"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    stages = {"collect", "build vanilla", "build nat", "train vanilla", "train nat", "eval vanilla", "eval nat",
              "eval base", "eval teacher", "report"}  # fmt: skip
    assert set(children) == stages and all(r.data.tags["nat_ray.status"] == "ran" for r in children.values())
    train = children["train nat"]
    assert train.data.params["max_steps"] == "2"  # the stage's config view
    loss = client.get_metric_history(train.info.run_id, "loss")
    assert sorted(m.step for m in loss) == [1, 2] and all(m.value > 0 for m in loss)
    assert {"lr", "tokens_per_s", "peak_rss_gb", "tokens_seen"} <= set(train.data.metrics)
    ev = children["eval nat"].data.metrics
    assert 0 <= ev["strategyqa.accuracy"] <= 1 and ev["strategyqa.n"] + ev["strategyqa.errors"] == 4
    assert "strategyqa.accuracy_ci95_high" in ev
    assert children["eval teacher"].data.metrics["strategyqa.n"] == 2333
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/table.md", "report/README.md", "report/loss.png", "report/run.json"} <= artifacts


def test_pipeline_end_to_end_then_a_changed_lr(tmp_path: Path, smollm2: Path, search_index: Path, ray_local) -> None:
    from tests.training.test_train_ray import tiny_llama_folder

    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    overrides = [f"out={tmp_path / 'run'}", f"train.model={model}", f"tools.search.index.path={search_index}"]
    overrides += ["tracking.kind=mlflow"]  # a local store in the run folder: read back below through MLflow's client
    summary = run_pipeline(load_config(REPO / "configs/ci_pipeline.yaml", overrides), progress=False)
    run = tmp_path / "run"
    _check_tracked(run)
    assert summary["variants"] == ["vanilla", "nat"]
    for folder in ["trajectories", "sets/vanilla", "sets/nat", "models/vanilla", "models/nat", "eval/vanilla",
                   "eval/nat", "eval/base", "eval/teacher", "report"]:  # fmt: skip
        assert read_stage(run / folder).complete, folder
    sets = {
        v: [json.loads(x) for x in (run / f"sets/{v}/train.jsonl").read_text().splitlines()] for v in ("vanilla", "nat")
    }
    assert len(sets["vanilla"]) == 8 and len(sets["nat"]) == 16
    metrics = {
        v: json.loads((run / f"eval/{v}/metrics.json").read_text()) for v in ("vanilla", "nat", "base", "teacher")
    }
    assert metrics["nat"]["template"] == "zero-shot-target-aware" and metrics["vanilla"]["template"] == "zero-shot"
    assert metrics["base"]["template"] == "zero-shot"
    for v in ("vanilla", "nat", "base"):
        m = metrics[v]["datasets"]["strategyqa"]
        assert m["n"] + m["errors"] == 4
    assert metrics["teacher"]["datasets"]["strategyqa"]["n"] == 2333
    table = (run / "report/table.md").read_text()
    for row in ("| base |", "| vanilla |", "| nat |", "| teacher |"):
        assert row in table
    assert "45.9 [43.9, 47.9] (n=2333)" in table
    readme = (run / "report/README.md").read_text()
    assert "## Accuracy" in readme and "action-error rate" in readme and "![loss.png](loss.png)" in readme
    paired = {(c["a"], c["b"]): c for c in json.loads((run / "report/comparisons.json").read_text())}
    assert set(paired) == {("nat", "vanilla"), ("vanilla", "base"), ("nat", "base")}  # the teacher is not paired
    assert all(c["dataset"] == "strategyqa" and 0 < c["n_pairs"] <= 4 for c in paired.values())
    assert "## Paired comparisons" in readme and "| nat − vanilla | strategyqa |" in readme
    import matplotlib.image

    image = matplotlib.image.imread(run / "report/loss.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0
    info = json.loads((run / "report/run.json").read_text())
    assert info["versions"]["ray"] == "2.60.0" and {s["stage"] for s in info["stages"]} == {
        "collect",
        "build",
        "train",
        "eval",
    }
    collect_inputs = next(s["inputs"] for s in info["stages"] if s["stage"] == "collect")
    assert len(collect_inputs) == 3 and all(len(h) == 16 for h in collect_inputs.values())  # data file hashes

    # the run folder copied elsewhere (another machine, another study reusing it), resumable checkpoints turned on for
    # what is left: no stage is redone
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    stages = ["trajectories", "sets/nat", "models/nat", "eval/vanilla", "eval/nat", "eval/base", "report"]
    resilient = [f"out={moved}", "train.checkpoint_every=1", "train.max_failures=0"]
    run_pipeline(load_config(REPO / "configs/ci_pipeline.yaml", [*overrides, *resilient]), progress=False)
    assert {f: _stamp(moved / f) for f in stages} == {f: _stamp(run / f) for f in stages}
    shutil.rmtree(moved)

    before = {f: _stamp(run / f) for f in ["trajectories", "sets/nat", "models/nat", "eval/nat", "eval/base", "report"]}
    # a new lr, and compute matching: 1 epoch is 2 steps of vanilla's 8 examples and 4 of NAT's 16; `steps` gives both 4
    matched = ["train.lr=1e-4", "train.max_steps=null", "train.epochs=1", "study.match=steps"]
    matched += ["study.heldout=4"]  # each model's perplexity on the last 4 positives, which no set holds
    run_pipeline(load_config(REPO / "configs/ci_pipeline.yaml", [*overrides, *matched]), progress=False)
    for v in ("vanilla", "nat", "base"):
        held = read_stage(run / "heldout" / v)
        assert held.complete and held.counts["examples"] == 4 and held.counts["perplexity"] > 1, v
    assert held.config["mode"] == "vanilla" and read_stage(run / "heldout/nat").config["mode"] == "nat"
    after = {f: _stamp(run / f) for f in before}
    assert after["trajectories"] == before["trajectories"] and after["sets/nat"] == before["sets/nat"]
    assert after["eval/base"] == before["eval/base"]  # the base model did not change
    assert after["models/nat"] != before["models/nat"] and after["eval/nat"] != before["eval/nat"]
    assert after["report"] != before["report"]
    assert json.loads((run / "models/nat/nat_ray_train.json").read_text())["train"]["lr"] == 1e-4
    for v in ("vanilla", "nat"):
        record = json.loads((run / f"models/{v}/nat_ray_train.json").read_text())
        assert record["step"] == record["total_steps"] == 4, v
    readme = (run / "report/README.md").read_text()
    assert "Training budget (`study.match`): steps" in readme and readme.count("trained 4 optimizer steps") == 2


def test_regenerated_negatives_come_from_the_vanilla_model_of_the_run(
    tmp_path: Path, smollm2: Path, search_index: Path, ray_local, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nat_ray.storage import read_trajectories
    from nat_ray.types import Label
    from tests.training.test_train_ray import tiny_llama_folder

    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    run = tmp_path / "run"
    overrides = [f"out={run}", f"train.model={model}", f"tools.search.index.path={search_index}"]
    # regenerated only: beside vanilla, one NAT variant whose negatives come from vanilla's rollout (imported-negative
    # NAT is the test above's)
    overrides += ["study.negative_source=[regenerated]", "study.base=false", "study.teacher=false"]
    overrides += ["build.neg_num=4", "eval.limit=2", "train.drop_no_loss=true"]  # malformed first replies: no turns
    rollout = "{task: strategyqa, limit: 3, temperatures: [0.2, 0.7], max_turns: 2, episodes_per_worker: 8}"
    overrides += [f"rollout={rollout}"]
    config = load_config(REPO / "configs/ci_pipeline.yaml", overrides)

    def stopped(*_args: object) -> None:
        raise RuntimeError("stopped after the first round")  # a study stopped part-way (killed, out of time)

    monkeypatch.setattr("nat_ray.pipeline.driver.decide_controls", stopped)
    with pytest.raises(RuntimeError, match="stopped"):
        run_pipeline(config, progress=False)
    # what it evaluated is reported already, with each variant's record (the comparisons read them); no report stage
    assert read_stage(run / "report") is None and "| nat-regenerated |" in (run / "report/table.md").read_text()
    recorded = json.loads((run / "report/run.json").read_text())["variants"]
    assert [(v["name"], v["negative_source"]) for v in recorded] == [
        ("vanilla", "imported"),
        ("nat-regenerated", "regenerated"),
    ]
    paired = {(c["a"], c["b"]) for c in json.loads((run / "report/comparisons.json").read_text())}
    assert paired == {("nat-regenerated", "vanilla")}
    monkeypatch.undo()
    evals = {v: _stamp(run / "eval" / v) for v in ("vanilla", "nat-regenerated")}
    summary = run_pipeline(config, progress=False)  # resumed: nothing redone but the report, now its stage
    assert summary["variants"] == ["vanilla", "nat-regenerated"] and read_stage(run / "report").complete
    assert {v: _stamp(run / "eval" / v) for v in evals} == evals
    stage = read_stage(run / "regenerated")
    assert stage is not None and stage.complete and stage.stage == "regenerate"
    regenerated = read_trajectories(run / "regenerated")
    assert len(regenerated) == 6 and {t.source for t in regenerated} == {"regenerated:vanilla"}
    assert {t.model for t in regenerated} == {str(run / "models/vanilla")}
    negatives = [t for t in regenerated if t.label == Label.NEGATIVE]
    assert len(negatives) >= 4  # a random 2-layer model answers nothing right

    def examples(name: str) -> list[dict]:
        return [json.loads(x) for x in (run / f"sets/{name}/train.jsonl").read_text().splitlines()]

    vanilla, regen = examples("vanilla"), examples("nat-regenerated")
    # the positives are the collected ones vanilla trains on (NAT's carry its hint): only the negatives are new
    positives = [e for e in regen if e["label"] == "positive"]
    assert [e["id"] for e in positives] == [e["id"] for e in vanilla]

    # and the same trajectories: from the first trained turn on (after the question, where NAT adds its hint), every
    # turn — replies and observations — is vanilla's
    def answer(e: dict) -> list[dict]:
        msgs = e["messages"]
        return msgs[next(i for i, m in enumerate(msgs) if m["loss"]) :]

    assert [answer(e) for e in positives] == [answer(e) for e in vanilla]
    assert sum(e["label"] == "negative" for e in regen) == 4
    assert {e["id"] for e in regen if e["label"] == "negative"} <= {t.id for t in negatives}
    meta = json.loads((run / "sets/nat-regenerated/train.jsonl.manifest.json").read_text())
    assert meta["config"]["negatives_from"] == str(run / "regenerated")
    readme = (run / "report/README.md").read_text()
    line = "`nat-regenerated`: mode nat, 8 positives + 4 negatives (regenerated by this run's fine-tuned model)"
    assert line in readme
    assert "| nat-regenerated |" in (run / "report/table.md").read_text()
