"""The plan's cost of training, rollouts and held-out perplexity: the rates a finished run's stage records measured,
and the sum the plan prints for a study, against hand-counted steps."""

from __future__ import annotations

import json
from pathlib import Path

from nat_ray.config import load_config
from nat_ray.pipeline.cost_plan import cost_lines, measured_rates
from nat_ray.pipeline.driver import validate
from nat_ray.records import RUN_RECORD, RunLayout, RunRecord, StageManifest
from nat_ray.storage import write_record
from tests.conftest import run_cli


def _stage(folder: Path, stage: str, variant: str | None, seconds: float, counts: dict, config: dict | None = None):
    write_record(folder / "_stage.json", StageManifest(stage=stage, variant=variant, config_hash="h", config=config,
                                                       counts=counts, seconds=seconds, complete=True))  # fmt: skip


def _done(folder: Path) -> Path:
    """A finished run: vanilla trained 31 steps of 8 in 496 s (2 s an example), NUT 62 steps in 1,488 s (3 s), a
    rollout of 1,100 episodes in 110 s, held-out 90 and 110 s, and one interrupted training that does not count."""
    layout = RunLayout(folder)
    _stage(layout.model("vanilla"), "train", "vanilla", 496, {"step": 31}, {"global_batch_size": 8})
    _stage(layout.model("nut"), "train", "nut", 1488, {"step": 62}, {"global_batch_size": 8})
    write_record(layout.model("nat") / "_stage.json", StageManifest(stage="train", variant="nat", config_hash="h",
                 config={"global_batch_size": 8}, counts={"step": 9}, seconds=999, complete=False))  # fmt: skip
    _stage(layout.regenerated, "regenerate", None, 110, {"trajectories": 1100})
    _stage(layout.heldout_dir("vanilla"), "heldout", "vanilla", 90, {})
    _stage(layout.heldout_dir("nut"), "heldout", "nut", 110, {})
    variants = [{"name": "vanilla", "mode": "vanilla"}, {"name": "nut", "mode": "nut"}]
    write_record(layout.report / RUN_RECORD, RunRecord.new(config={}, variants=variants))
    return folder


def test_rates_are_per_trained_example_by_mode_per_episode_and_per_heldout_stage(tmp_path: Path) -> None:
    rates = measured_rates(_done(tmp_path / "done"))
    assert rates.train == {"all": (496 + 1488) / (8 * 93), "vanilla": 2.0, "nut": 3.0}
    assert rates.rollout == 0.1 and rates.heldout == 100.0
    pooled = tmp_path / "seeds"  # a pool-seeds folder: its runs' stages
    pooled.mkdir()
    (pooled / "runs.json").write_text(json.dumps([str(tmp_path / "done")]))
    assert measured_rates(pooled) == rates


def test_the_plan_sums_each_models_steps_the_kept_control_and_the_rollout(data_dir, tmp_path: Path) -> None:
    source = _done(tmp_path / "done")
    overrides = [f"out={tmp_path / 'run'}", "study.modes=[vanilla, nut, nat]", "study.negatives=[250]"]
    plan = validate(load_config("configs/study_math_negatives.yaml", overrides))
    lines = cost_lines(plan, source, "there", (600.0, 1800.0))
    # vanilla 250 // 8 = 31 steps at 2 s an example; NUT 62 at 3 s; NAT 62 and the steps control 62 at the mean
    # over every mode (NAT has no rate of its own; the control trains vanilla's mode)
    train = 31 * 8 * 2.0 + 62 * 8 * 3.0 + 62 * 8 * (1984 / 744) + 62 * 8 * 2.0
    assert lines[0].startswith(f"plan: training ~{train / 3600:.1f} h: 4 models, 217 optimizer steps of 8 examples")
    assert lines[1] == "plan: rollouts of the study's own models ~2 min: 1 x 1,100 episodes at 0.10 s each"
    assert lines[2] == "plan: held-out perplexity ~7 min: 4 models at 100 s each"
    total = train + 110 + 400 + 1800 + 600  # and the control's eval, which the eval line does not count
    assert lines[3] == f"plan: in all ~{total / 3600:.1f} h at these rates, 1 control eval(s) included"
    r = run_cli("pipeline", "--config", "configs/study_math_negatives.yaml", *overrides, "--plan-from", str(source))
    assert r.returncode == 0, r.stderr
    assert f"plan: training ~{train / 3600:.1f} h: 4 models" in r.stdout and "in all" not in r.stdout  # no eval rate
