"""`nat-ray eval --trajectories`, `nat-ray show`, and eval's bad-input errors (no Ray, no model)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO, run_cli


def _import_strategyqa(files: dict[str, Path], out: Path) -> Path:
    r = run_cli(
        "import-nat",
        "--task",
        "StrategyQA",
        "--questions",
        str(files["questions"]),
        "--out",
        str(out),
        str(files["positive"]),
        str(files["negative"]),
    )
    assert r.returncode == 0, r.stderr
    return out


def test_the_shipped_gpt35_strategyqa_trajectories_score_1070_of_2333(tmp_path: Path, strategyqa_files) -> None:
    traj = _import_strategyqa(strategyqa_files, tmp_path / "traj")
    r = run_cli("eval", "--trajectories", str(traj), "--out", str(tmp_path / "eval"))
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    m = metrics["datasets"]["strategyqa"]
    assert m["n"] == 2333 and m["accuracy"] == 1070 / 2333 and m["errors"] == 0
    lo, hi = m["accuracy_ci95"]
    assert 0.43 < lo < 1070 / 2333 < hi < 0.49
    assert metrics["policy"]["models"] == ["gpt-3.5"] and metrics["math_average"] is None
    assert "strategyqa  2333  45.9" in r.stdout  # the printed table


def test_show_prints_counts_and_transcripts(tmp_path: Path, strategyqa_files) -> None:
    traj = _import_strategyqa(strategyqa_files, tmp_path / "traj")
    r = run_cli("show", str(traj), "--label", "positive", "-n", "2")
    assert r.returncode == 0, r.stderr
    assert "2333 episodes" in r.stdout and "negative 1263, positive 1070" in r.stdout
    assert r.stdout.count("=== strategyqa ") == 2 and "Agent> " in r.stdout and "Observation: " in r.stdout
    assert "reward True" in r.stdout and "reward False" not in r.stdout


def test_show_reveals_the_malformed_reply(tmp_path: Path) -> None:
    from nat_ray.storage import write_trajectories
    from nat_ray.types import FinishReason, Label, Trajectory

    t = Trajectory(
        id="1",
        task="gsm8k",
        question="2+3?",
        ground_truth="5",
        label=Label.NEGATIVE,
        reward=False,
        finish_reason=FinishReason.MALFORMED_ACTION,
        action_errors=1,
        malformed_reply="The answer is five, I think.",
    )
    write_trajectories([t], tmp_path / "ds")
    r = run_cli("show", str(tmp_path / "ds"), "--finish-reason", "malformed_action")
    assert r.returncode == 0, r.stderr
    assert "malformed_action 1" in r.stdout and "The answer is five, I think." in r.stdout


def test_bad_eval_input_is_one_clear_line_before_any_work(tmp_path: Path) -> None:
    config = REPO / "configs/ci_eval_scripted.yaml"
    r = run_cli("eval", "--config", str(config), f"out={tmp_path}", "eval.datasets=[gsm8k,gsm9k]")
    assert r.returncode == 2
    assert "command-line override eval.datasets: Value error, item 1: unknown data set 'gsm9k'" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("datasets: [gsm8k, svamp]", "datasets: [gsm8k, mathqa]"))
    r = run_cli("eval", "--config", str(bad))
    assert r.returncode == 2 and f"{bad}:5: eval.datasets" in r.stderr and "'mathqa'" in r.stderr
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    r = run_cli("eval", "--config", str(config), f"out={tmp_path}", f"policy={{kind: transformers, model: {empty}}}")
    assert r.returncode == 2 and "not a model folder (no config.json)" in r.stderr
    r = run_cli("eval", "--config", str(config), f"out={tmp_path}", "eval.template=no-such-template")
    assert r.returncode == 2 and "eval on gsm8k" in r.stderr and "unknown template 'no-such-template'" in r.stderr
    r = run_cli("eval", "--config", str(config), f"out={tmp_path}", "eval.questions={strategyqa: x.jsonl}")
    assert r.returncode == 2 and "questions: 'strategyqa' is not one of eval.datasets" in r.stderr
    # a bf16 decode depends on its batch company, so a repeatable eval (the default) refuses it, naming both keys
    bf16 = "policy={kind: transformers, model: smollm2, dtype: bfloat16}"
    r = run_cli("eval", "--config", str(config), f"out={tmp_path}", bf16)
    assert r.returncode == 2 and "policy.dtype: bfloat16 with eval.repeatable: true" in r.stderr
    r = run_cli("eval", "--trajectories", str(tmp_path))
    assert r.returncode == 2 and "--trajectories DIR needs --out OUT" in r.stderr
    assert not (tmp_path / "eval").exists()


def test_a_repeatable_eval_decodes_an_engine_policy_in_float32_and_leaves_the_rest() -> None:
    from nat_ray.config import load_config
    from nat_ray.evaluation.plan import eval_policy

    config = REPO / "configs/eval_smollm2.yaml"
    assert eval_policy(load_config(config, [])).policy_section.dtype == "float32"  # auto -> float32 for the eval
    assert eval_policy(load_config(config, ["eval.repeatable=false"])).policy_section.dtype == "auto"
    fast = load_config(config, ["eval.repeatable=false", "policy.dtype=bfloat16"])
    assert eval_policy(fast).policy_section.dtype == "bfloat16"
    scripted = load_config(REPO / "configs/ci_eval_scripted.yaml", [])
    assert eval_policy(scripted) is scripted
