"""``nat-ray compare``: two eval folders of the same questions, paired per data set and over the math sets pooled,
against hand-counted discordant pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.cli import main
from nat_ray.errors import InputError
from nat_ray.evaluation.report_paired import compare_evals
from nat_ray.storage import write_trajectories
from nat_ray.types import FinishReason, Label, Trajectory


def _t(qid: str, task: str, right: bool) -> Trajectory:
    return Trajectory(id=qid, task=task, question=f"q{qid}?", ground_truth="1", prediction="1" if right else "2",
                      reward=right, label=Label.POSITIVE if right else Label.NEGATIVE,
                      finish_reason=FinishReason.FINISH)  # fmt: skip


def _eval(folder: Path, right: dict[str, set[int]]) -> Path:
    for task, ids in right.items():
        write_trajectories([_t(str(i), task, i in ids) for i in range(10)], folder / task)
    return folder


def test_two_evals_are_paired_per_set_and_pooled(tmp_path: Path, capsys) -> None:
    # multiarith: a right on 0-5, b on 0-1 (a only 4, b only 0); svamp: a on 0-2, b on 0-5 (a only 0, b only 3)
    a = _eval(tmp_path / "hint" / "nat", {"multiarith": set(range(6)), "svamp": set(range(3))})
    b = _eval(tmp_path / "plain" / "nat", {"multiarith": {0, 1}, "svamp": set(range(6)), "gsm8k": set()})
    paired, loops, refused = compare_evals(a, b, ("correct", "incorrect"))
    got = {c.dataset: (c.n_pairs, c.a_only, c.b_only) for c in paired}
    assert got == {"multiarith": (10, 4, 0), "svamp": (10, 0, 3), "all math (pooled)": (20, 4, 3)}
    assert not refused and [c.dataset for c in loops] == ["all math (pooled)"]
    assert all(c.p_holm >= c.p_mcnemar for c in paired)

    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(b), "--names", "correct", "incorrect", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| correct − incorrect | multiarith | 10 | 4 | 0 | +40.0" in printed and "loop" in printed
    rows = json.loads(out.read_text())
    assert {r["outcome"] for r in rows} == {"accuracy", "loops"} and len(rows) == 4


def test_evals_that_cannot_be_paired_are_refused_by_name(tmp_path: Path) -> None:
    a = _eval(tmp_path / "a" / "nat", {"multiarith": {0}})
    b = _eval(tmp_path / "b" / "nat", {"svamp": {0}})
    with pytest.raises(InputError, match="both evals are named 'nat'"):
        compare_evals(a, b, ("nat", "nat"))
    with pytest.raises(InputError, match=r"\(multiarith\) and .* \(svamp\) share no data set"):
        compare_evals(a, b, ("a", "b"))
    with pytest.raises(InputError, match="holds no eval"):
        compare_evals(a, tmp_path / "missing", ("a", "b"))
