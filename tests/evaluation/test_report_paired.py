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


def test_two_recipes_over_seeds_from_other_run_folders_are_pooled_with_the_seeds_random(tmp_path: Path, capsys) -> None:
    # three seeds, each pair from its own run folders; on multiarith a beats b by 4, 2 and 3 of 10 questions
    right_a, right_b = [set(range(6)), set(range(4)), set(range(5))], [{0, 1}, {0, 1}, {0, 1}]
    pairs = [(_eval(tmp_path / f"study-seed{s}" / "gold500", {"multiarith": ra, "svamp": {0}}),
              _eval(tmp_path / f"other-seed{s}" / "vanilla-steps", {"multiarith": rb, "svamp": {0}}))
             for s, ra, rb in zip((42, 43, 44), right_a, right_b, strict=True)]  # fmt: skip
    (a, b), more = pairs[0], pairs[1:]
    paired, _, refused = compare_evals(a, b, ("gold500", "vanilla-steps"), more)
    ma = next(c for c in paired if c.dataset == "multiarith")
    assert (ma.seeds, ma.n_pairs, ma.a_only, ma.b_only) == (3, 30, 9, 0) and not refused
    assert ma.label == "gold500 − vanilla-steps (3 seeds pooled)"
    assert [round(d, 6) for d in ma.crossed.per_seed] == [0.4, 0.2, 0.3] and ma.crossed.diff == pytest.approx(0.3)
    assert ma.crossed.p_holm is not None  # Holm over the seeds-random rows

    argv = ["compare", str(a), str(b), "--names", "gold500", "vanilla-steps"]
    assert main([*argv, *(x for pair in more for x in ("--seed", str(pair[0]), str(pair[1])))]) == 0
    printed = capsys.readouterr().out
    assert "| gold500 − vanilla-steps | multiarith | 3 × 10 | +40.0, +20.0, +30.0 |" in printed

    with pytest.raises(InputError, match="share no data set"):
        compare_evals(a, b, ("x", "y"), [(_eval(tmp_path / "gsm", {"gsm8k": {0}}), b)])
