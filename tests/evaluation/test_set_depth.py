"""The depth of a math training set: calculator calls per example by label, counted by the ReAct parser over the
trained turns only, against hand-counted sets; and the report's section from a run folder."""

from __future__ import annotations

from pathlib import Path

from nat_ray.evaluation.set_depth import depth_table, example_depth, set_depth
from nat_ray.records import DatasetManifest, RunLayout
from nat_ray.storage import write_examples
from nat_ray.types import Example, Turn


def _example(i: int, label: str, calls: int, finish: bool) -> Example:
    turns = [Turn(role="user", content="Question: 2 + 3? Action: calculate[9*9]")]  # a prompt's action is not counted
    for k in range(calls):
        turns += [Turn(role="assistant", content=f"Thought: add\nAction: calculate[2+{k}]", loss=True),
                  Turn(role="user", content=f"Observation: {2 + k}")]  # fmt: skip
    if finish:
        turns.append(Turn(role="assistant", content="Thought: done\nAction: finish[5]", loss=True))
    else:
        turns.append(Turn(role="assistant", content="I am not sure", loss=True))  # no action: no call, no finish
    return Example(id=str(i), label=label, messages=turns)


def test_calls_one_call_share_and_finishing_per_label(tmp_path: Path) -> None:
    assert example_depth(_example(0, "positive", 2, True)) == (2, True)
    examples = [_example(0, "positive", 3, True), _example(1, "positive", 1, True), _example(2, "negative", 1, False),
                _example(3, "negative", 1, True), _example(4, "negative", 4, True)]  # fmt: skip
    got = set_depth(examples)
    assert list(got) == ["positive", "negative"]
    assert got["positive"] == {"n": 2, "calls_per_example": 2.0, "one_call_share": 0.5, "finished_share": 1.0}
    assert got["negative"]["calls_per_example"] == 2.0 and got["negative"]["one_call_share"] == 2 / 3
    assert got["negative"]["finished_share"] == 2 / 3

    run = tmp_path / "run"
    write_examples(examples, RunLayout(run).set_file("nut"), DatasetManifest(kind="training-set"))
    write_examples(examples[:2], RunLayout(run).set_file("vanilla"), DatasetManifest(kind="training-set"))
    variants = [{"name": "vanilla", "mode": "vanilla"}, {"name": "nut", "mode": "nut"},
                {"name": "dpo", "mode": "dpo"}, {"name": "gone", "mode": "nat"}]  # fmt: skip
    section = depth_table(run, variants)
    rows = [line for line in section if line.startswith("| vanilla |") or line.startswith("| nut |")]
    assert rows == ["| vanilla | positive | 2 | 2.00 | 50.0 | 100.0 |", "| nut | positive | 2 | 2.00 | 50.0 | 100.0 |",
                    "| nut | negative | 3 | 2.00 | 66.7 | 66.7 |"]  # fmt: skip
    assert depth_table(run, variants[2:]) == []
