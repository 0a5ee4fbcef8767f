"""Near-miss negatives (``study.negative_source: near-miss``): one calculator step of a correct trajectory changed,
the change carried through the later steps and the answer, graded wrong; and the pipeline's stage that makes them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.errors import InputError
from nat_ray.gold import collect_gold
from nat_ray.near_miss import STILL_RIGHT, change, make_near_misses, near_miss
from nat_ray.records import RunLayout
from nat_ray.storage import read_trajectories
from nat_ray.tools import safe_sympy
from nat_ray.types import Label
from tests.test_gold import NATALIA

REPO = Path(__file__).resolve().parents[1]
BETTY = {
    "question": "Betty needs $100. She has half of it, her parents give her $15 and her grandparents twice as much as "
    "her parents. How much more money does Betty need?",
    "answer": "Betty has 100 / 2 = $<<100/2=50>>50.\nHer grandparents gave her 15 * 2 = $<<15*2=30>>30.\nShe needs "
    "100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5",
}


def _gold(tmp_path: Path, *solutions: dict) -> list:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in solutions))
    collect_gold("gsm8k", path, tmp_path / "gold")
    return read_trajectories(tmp_path / "gold")


def _replies(t) -> list[str]:  # type: ignore[no-untyped-def]
    return [turn.content for turn in t.turns if turn.role == "assistant"]


def test_one_step_changes_and_the_rest_is_carried_to_a_wrong_answer(tmp_path: Path) -> None:
    (gold,) = _gold(tmp_path, NATALIA)
    for seed in range(20):  # whichever step and change the seed picks
        made = near_miss(gold, safe_sympy.evaluate, random.Random(seed))
        if made == STILL_RIGHT:
            continue
        assert not isinstance(made, str)
        assert made.label == Label.NEGATIVE and made.reward is False and made.source == "near-miss"
        assert made.id == gold.id and made.question == gold.question and made.prediction != "72"
        old, new = _replies(gold), _replies(made)
        assert len(new) == len(old) == 3
        observations = [t.content for t in made.turns if t.role == "user"][:2]
        if new[0] != old[0]:  # the first step changed: its result is carried into the second step and the answer
            first = observations[0].removeprefix("Observation: ")
            operand = first if first.isdigit() else f"({first})"  # a fraction in parentheses
            assert new[1].startswith(f"Thought: {first} clips in May") and f"calculate[48+{operand}]" in new[1]
        else:  # the second step changed: the first is untouched
            assert new[1] != old[1]
        last = observations[1].removeprefix("Observation: ")
        assert new[2] == f"Thought: {last} clips altogether in April and May.\nAction: finish[{last}]"
        assert made.prediction == last
    draws = [near_miss(gold, safe_sympy.evaluate, random.Random(s)) for s in (3, 3)]
    assert draws[0] == draws[1]  # the seed decides


def test_a_fraction_goes_into_a_later_expression_in_parentheses_and_a_question_s_number_stays(tmp_path: Path) -> None:
    (gold,) = _gold(tmp_path, BETTY)

    class Swap:  # the second step's operator swapped (15*2 -> 15/2)
        def random(self) -> float:
            return 0.0

        def choice(self, seq):  # type: ignore[no-untyped-def]
            return seq[1] if len(seq) == 3 else seq[0]

    made = near_miss(gold, safe_sympy.evaluate, Swap())  # type: ignore[arg-type]
    assert not isinstance(made, str)
    replies = _replies(made)
    assert replies[1].endswith("calculate[15/2]")
    # 30 (the changed result) becomes (15/2); 100, 50 and 15 stay (50 is unchanged, 100 and 15 are the question's)
    assert replies[2].endswith("calculate[100-50-(15/2)-15]") and made.prediction == "55/2"


def test_a_change_that_does_not_reach_the_answer_is_left_out(tmp_path: Path) -> None:
    solution = {"question": "Tom has 3 apples and 4 pears. How many pears?",
                "answer": "Apples: 3+0 = <<3+0=3>>3. Pears: 4*1 = <<4*1=4>>4.\n#### 4"}  # fmt: skip
    (gold,) = _gold(tmp_path, solution)

    class First:
        def random(self) -> float:
            return 0.0

        def choice(self, seq):  # type: ignore[no-untyped-def]
            return seq[0]

    assert near_miss(gold, safe_sympy.evaluate, First()) == STILL_RIGHT  # type: ignore[arg-type]


def test_change_swaps_an_operator_or_an_operand_never_a_sign_or_a_power() -> None:
    rng = random.Random(0)
    for _ in range(50):
        changed = change("-3+2**4", ["7"], rng)
        assert changed in ("-3-2**4", "-7+2**4", "-3+7**4", "-3+2**7")
    assert change("48/2", [], random.Random(1)) != "48/2"


def test_the_dataset_counts_what_gave_no_near_miss_and_keeps_only_the_asked_questions(tmp_path: Path) -> None:
    _gold(tmp_path, NATALIA, BETTY)
    meta = make_near_misses(tmp_path / "gold", tmp_path / "near", seed=1)
    made = read_trajectories(tmp_path / "near")
    assert meta.counts["sources"] == 2 and meta.counts["negative"] == len(made)
    assert meta.counts["negative"] + meta.counts["left_out_still_graded_right"] == 2
    again = make_near_misses(tmp_path / "gold", tmp_path / "again", seed=1, ids={"1"})
    assert [t.id for t in read_trajectories(tmp_path / "again")] == [t.id for t in made if t.id == "1"]
    assert again.counts["sources"] == 1
    with pytest.raises(InputError, match="no correct trajectory"):
        make_near_misses(tmp_path / "gold", tmp_path / "none", seed=1, ids={"9"})


def test_the_pipeline_builds_nat_from_gold_positives_and_near_misses_of_the_rollout_s_questions(
    tmp_path: Path, data_dir: Path
) -> None:
    """The stages before training, without Ray: collect (gold), the near-miss stage on the questions the rollout
    section covers, the NAT set built from both."""
    from nat_ray.pipeline import driver
    from nat_ray.pipeline.sets import build_stage

    run = tmp_path / "run"
    overrides = [f"out={run}", "collect.limit=40", "build.pos_num=10", "build.neg_num=5", "rollout.offset=20",
                 "rollout.limit=15", "study={modes: [nat], negative_source: [near-miss], base: false}"]  # fmt: skip
    plan = driver.validate(load_config(REPO / "configs/quickstart.yaml", overrides))
    assert [v.name for v in plan.variants] == ["nat-near-miss"]
    collected = driver._collect(plan, driver._collect_identity(plan), print)
    made = driver._near_miss(plan, collected, print)
    near = read_trajectories(RunLayout(run).near_miss)
    assert made.counts["negative"] == len(near) >= 10 and {t.label for t in near} == {Label.NEGATIVE}
    assert {int(t.id) for t in near} <= set(range(20, 35))  # the rollout section's questions only
    built = build_stage(plan, plan.variants[0], {"collect": collected.config_hash}, print)
    assert built.counts["positives"] == 10 and built.counts["negatives"] == 5
    manifest = json.loads((RunLayout(run).set_file("nat-near-miss").parent / "train.jsonl.manifest.json").read_text())
    assert manifest["config"]["negatives_from"] == str(RunLayout(run).near_miss)
    again = driver._near_miss(plan, collected, print)  # unchanged: not redone
    assert again.config_hash == made.config_hash and again.started_at == made.started_at
    with pytest.raises(InputError, match="'near-miss' changes a calculator step: a math task"):
        driver.validate(load_config(REPO / "configs/quickstart_strategyqa.yaml", ["study.negative_source=[near-miss]"]))
