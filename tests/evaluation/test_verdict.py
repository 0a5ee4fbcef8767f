"""``nat-ray verdict``: named comparisons across run folders and seeds, against hand-counted discordant pairs, with
Holm over the whole family, a variant missing under a seed left out of it, and bad files refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nat_ray.cli import main
from nat_ray.errors import InputError
from nat_ray.evaluation.compare import holm
from nat_ray.evaluation.metrics import eval_metrics, group_by_task
from nat_ray.evaluation.verdict import VerdictConfig, load_verdict, write_verdict
from nat_ray.storage import write_json, write_trajectories
from nat_ray.types import FinishReason, Label, Trajectory, Turn

REPO = Path(__file__).resolve().parents[2]


def _t(qid: int, task: str, right: bool) -> Trajectory:
    calc = [Turn(role="assistant", content=f"Action: calculate[{qid}+1]", loss=True)]
    return Trajectory(id=str(qid), task=task, question=f"q{qid} has {qid} apples?", ground_truth="1",
                      prediction="1" if right else "2", reward=right, turns=calc,
                      label=Label.POSITIVE if right else Label.NEGATIVE, finish_reason=FinishReason.FINISH)  # fmt: skip


def _eval(folder: Path, right: set[int]) -> None:
    """An eval folder: multiarith questions 0-9, right on ``right``; svamp 0-9 all wrong."""
    trajs = [_t(i, "multiarith", i in right) for i in range(10)] + [_t(i, "svamp", False) for i in range(10)]
    for task, group in group_by_task(trajs).items():
        write_trajectories(group, folder / task)
    write_json(folder / "metrics.json", eval_metrics(group_by_task(trajs), {}, "zero-shot"))


def _file(tmp_path: Path, **over: object) -> Path:
    tree = {"title": "Math verdict", "runs": {1: "s1", 2: "s2"},
            "variants": {"nut": "{run}/eval/nut", "vanilla": "{run}/eval/vanilla",
                         "gold": "gold-seed{seed}/eval/vanilla"},
            "comparisons": [["nut", "vanilla"], ["gold", "nut"]]} | over  # fmt: skip
    path = tmp_path / "verdict.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def test_comparisons_across_run_folders_pool_the_seeds_and_share_one_holm(tmp_path: Path, capsys, monkeypatch) -> None:
    # seed 1: nut right on 0-5, vanilla on 0-1; seed 2: nut on 0-2, vanilla on 0-3 -> nut − vanilla on multiarith:
    # 20 pairs, 4 and 1 discordant; gold (another run folder per seed) right on 0-7 under seed 1 only
    _eval(tmp_path / "s1/eval/nut", set(range(6)))
    _eval(tmp_path / "s1/eval/vanilla", {0, 1})
    _eval(tmp_path / "s2/eval/nut", set(range(3)))
    _eval(tmp_path / "s2/eval/vanilla", set(range(4)))
    _eval(tmp_path / "gold-seed1/eval/vanilla", set(range(8)))
    _eval(tmp_path / "base", set())
    path, out = _file(tmp_path, base="base"), tmp_path / "verdict"
    counts = write_verdict(path, out, base=tmp_path)
    assert counts == {"rows": 6, "comparisons": 6, "seeds_random": 3, "missing": 1, "refused": 0}
    rows = json.loads((out / "comparisons.json").read_text())
    acc = {(r["a"], r["b"], r["dataset"]): r for r in rows if r["outcome"] == "accuracy"}
    ma = acc[("nut", "vanilla", "multiarith")]
    assert (ma["seeds"], ma["n_pairs"], ma["a_only"], ma["b_only"]) == (2, 20, 4, 1)
    assert ma["crossed"]["per_seed"] == pytest.approx([0.4, -0.1])
    # gold is under seed 1 alone: tested on its questions, not in the seeds-random family
    g = acc[("gold", "nut", "multiarith")]
    assert (g["seeds"], g["a_only"], g["b_only"], g["crossed"]) == (1, 2, 0, None)
    # one Holm over every accuracy row, and one over the crossed rows
    ps = [r["p_mcnemar"] for r in acc.values()]
    assert [r["p_holm"] for r in acc.values()] == pytest.approx(holm(ps))
    crossed = [r["crossed"] for r in acc.values() if r["crossed"]]
    assert [c["p_holm"] for c in crossed] == pytest.approx(holm([c["p"] for c in crossed]))
    assert VerdictConfig.model_validate_json((out / "verdict.json").read_text()) == load_verdict(path)
    text = (out / "README.md").read_text()
    assert text.startswith("# Math verdict") and "gold under seed 2" in text
    assert "| nut | 2 | 22.5 ± 10.6 |" in text  # pooled over 20 questions per seed: 6/20 and 3/20
    assert "| base | 1 | 0.0 |" in text and "| nut-seed1 | multiarith | 60.0 [31.3, 83.2] | 0.0 |" in text
    assert "(Under one seed only, so not in the table above: gold − nut.)" in text
    assert main(["verdict", str(path), "--out", str(tmp_path / "again")]) == 2  # folders are relative to the cwd
    assert "verdict.yaml: base: base: no metrics.json under" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["verdict", "verdict.yaml", "--out", "again"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 6
    assert (tmp_path / "again/README.md").read_text() == text.replace("--out " + str(out), "--out again").replace(
        str(path), "verdict.yaml"
    )


def test_bad_verdict_files_are_refused_by_field(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"comparisons\[1\]: 'rft' is not a variant"):
        load_verdict(_file(tmp_path, comparisons=[["nut", "vanilla"], ["rft", "nut"]]))
    with pytest.raises(InputError, match=r"verdict.yaml: seeds: Extra inputs"):
        load_verdict(_file(tmp_path, seeds=[1, 2]))
    with pytest.raises(InputError, match=r"verdict.yaml: variants.nut: '\{rn\}/eval/nut': only \{run\} and \{seed\}"):
        load_verdict(_file(tmp_path, variants={"nut": "{rn}/eval/nut", "vanilla": "x", "gold": "y"}))
    with pytest.raises(InputError, match=r"variants.base: 'base' and names with '-seed' are the report's own rows"):
        load_verdict(_file(tmp_path, variants={"base": "b", "nut": "n", "vanilla": "v", "gold": "g"}))
    with pytest.raises(InputError, match=r"verdict.yaml: no eval found under .*nut under seed 1 \(s1/eval/nut: no"):
        write_verdict(_file(tmp_path), tmp_path / "o", base=tmp_path)
    (tmp_path / "bad.yaml").write_text("runs: {1: s1\n")
    with pytest.raises(InputError, match=r"bad.yaml:\d+: malformed YAML"):
        load_verdict(tmp_path / "bad.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "configs/verdict").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_verdict_file_loads(path: Path) -> None:
    cfg = load_verdict(path)
    assert cfg.comparisons and len(cfg.runs) >= 2  # a verdict is over training seeds


def test_the_math_verdict_asks_the_issues_question() -> None:
    cfg = load_verdict(REPO / "configs/verdict/math.yaml")
    assert {"vanilla", "nut", "nat", "rft", "dpo", "kto", "control", "gold500"} <= set(cfg.variants)
    assert ("nat", "nut") in cfg.comparisons
