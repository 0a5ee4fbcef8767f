"""Gold trajectories from GSM8K's calculator annotations (``collect.kind: gold``): the replies, the calculator's
observations, the grade, and every reason a solution is left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from nat_ray.config_sections import CollectConfig
from nat_ray.errors import InputError
from nat_ray.gold import agrees, collect_gold, parse_solution
from nat_ray.react import parse_reply
from nat_ray.storage import read_trajectories
from nat_ray.types import FinishReason, Label

NATALIA = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How "
    "many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether "
    "in April and May.\n#### 72",
}


def test_a_solution_becomes_the_replies_a_policy_would_write(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(NATALIA) + "\n")
    meta = collect_gold("gsm8k", path, tmp_path / "gold")
    (t,) = read_trajectories(tmp_path / "gold")
    assert [turn.content for turn in t.turns] == [
        "Thought: Natalia sold 48/2\nAction: calculate[48/2]",
        "Observation: 24",
        "Thought: 24 clips in May. Natalia sold 48+24\nAction: calculate[48+24]",
        "Observation: 72",
        "Thought: 72 clips altogether in April and May.\nAction: finish[72]",
        "Observation: Episode finished",
    ]
    assert [turn.loss for turn in t.turns] == [True, False, True, False, True, False]
    assert t.label == Label.POSITIVE and t.finish_reason == FinishReason.FINISH and t.prediction == "72"
    assert t.id == "0" and t.ground_truth == "72" and t.source == "gold:annotations"
    for turn in t.turns[::2]:  # every reply parses as the paper's ReAct format
        assert parse_reply(turn.content) is not None
    assert meta.counts["trajectories"] == 1 and meta.counts["solutions"] == 1


def test_no_thought_holds_a_result_the_calculator_has_not_returned() -> None:
    steps, closing, final = parse_solution(NATALIA["answer"])
    assert [s.thought for s in steps] == ["Natalia sold 48/2", "24 clips in May. Natalia sold 48+24"]
    assert "24" not in steps[0].thought.replace("48/2", "") and "72" not in steps[1].thought
    assert closing == "72 clips altogether in April and May." and final == "72"
    # two steps on one line: the second's thought starts after the first's printed result
    steps, _, _ = parse_solution("He has 2*3 = <<2*3=6>>6 and 6+1 = <<6+1=7>>7 apples.\n#### 7")
    assert [(s.thought, s.expression) for s in steps] == [("He has 2*3", "2*3"), ("6 and 6+1", "6+1")]
    steps, _, _ = parse_solution("It costs 1,000+200 = $<<1,000+200=1,200>>1,200.\n#### 1,200")
    assert steps[0].expression == "1000+200" and steps[0].annotated == "1,200"


def test_the_calculator_must_agree_with_the_annotation_to_its_decimals() -> None:
    assert agrees("10/3", "3.33") and agrees("1/5", "0.2") and agrees("144", "144.00") and agrees("1200", "1,200")
    assert not agrees("10/3", "3.4") and not agrees("7", "8") and not agrees("Error: x", "1")


def test_solutions_left_out_are_counted_by_reason(tmp_path: Path) -> None:
    records = [
        NATALIA,
        {"question": "q", "answer": "No calculation here.\n#### 5"},
        {"question": "q", "answer": "Wrong: 2*3 = <<2*3=7>>7.\n#### 7"},
        {"question": "q", "answer": "Bad: 5% = <<5%=0.05>>0.05.\n#### 0.05"},
        {"question": "q", "answer": "Right sum 2+2 = <<2+2=4>>4 but the answer line says 5.\n#### 5"},
        {"question": "q", "answer": "a <<1+1=2>>2 b <<2+1=3>>3 c <<3+1=4>>4.\n#### 4"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    meta = collect_gold("gsm8k", path, tmp_path / "gold", max_turns=3)
    c = meta.counts
    assert c["trajectories"] == 2 and c["solutions"] == 6  # Natalia, and the wrong final answer's sum (graded 5)
    assert c["left_out_no_annotated_step"] == 1 and c["left_out_calculator_differs_from_annotation"] == 1
    assert c["left_out_calculator_error"] == 1 and c["left_out_more_replies_than_max_turns"] == 1
    assert c["left_out_finish_graded_wrong"] == 0  # the finish is the solution's own #### answer: graded right
    assert meta.config["max_turns"] == 3


def test_gsm8k_train_solutions_become_gold_trajectories(data_dir: Path, tmp_path: Path) -> None:
    meta = collect_gold("gsm8k", data_dir / "gsm8k/train.jsonl", tmp_path / "gold", limit=200)
    trajs = read_trajectories(tmp_path / "gold")
    assert meta.counts["solutions"] == 200 and len(trajs) == meta.counts["trajectories"] >= 170
    assert all(t.label == Label.POSITIVE and 2 <= t.num_turns <= 6 for t in trajs)
    assert all(t.turns[1].content.startswith("Observation: ") for t in trajs)


def test_gold_needs_a_math_task_and_a_questions_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="collect kind 'gold' needs questions"):
        CollectConfig(kind="gold", task="gsm8k")
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(NATALIA) + "\n")
    with pytest.raises(InputError, match="task strategyqa has no calculator-annotated solutions"):
        collect_gold("strategyqa", path, tmp_path / "gold")
    path.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(InputError, match=r"train.jsonl:1: a worked solution needs a string 'answer'"):
        collect_gold("gsm8k", path, tmp_path / "gold")
