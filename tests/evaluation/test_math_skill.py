"""Skill on math sets: the copy-a-number floor and the calculator measures, against hand-counted episodes."""

from __future__ import annotations

from pathlib import Path

from nat_ray.evaluation.math_skill import copy_answers, copy_floor, math_skill, numbers
from nat_ray.evaluation.metrics import dataset_metrics, eval_metrics
from nat_ray.evaluation.report import write_report
from nat_ray.records import DatasetManifest, EvalMetrics, RunLayout
from nat_ray.storage import write_examples, write_record, write_trajectories
from nat_ray.types import Example, FinishReason, Label, Trajectory, Turn


def _t(qid: str, question: str, gt: str, replies: list[tuple[str, str]], prediction: str | None) -> Trajectory:
    """An episode: each (reply, observation) pair as two turns; graded by exact match as the paper's grader."""
    turns = []
    for reply, observation in replies:
        turns += [Turn(role="assistant", content=reply, loss=True), Turn(role="user", content=observation)]
    right = prediction == gt
    reason = FinishReason.FINISH if prediction is not None else FinishReason.MAX_TURNS
    label = Label.POSITIVE if right else Label.NEGATIVE
    return Trajectory(id=qid, task="gsm8k", question=question, ground_truth=gt, turns=turns, prediction=prediction,
                      reward=right, label=label, finish_reason=reason)  # fmt: skip


def test_numbers_and_the_copy_rules() -> None:
    assert numbers("Tom had 1,200 apples, ate 2.5 and .5 of a pie on day 3.") == [1200, 2.5, 0.5, 3]
    assert copy_answers("A has 3 pens and B has 12; C has 5.") == {"first": "3", "last": "5", "largest": "12",
                                                                   "sum": "20"}  # fmt: skip
    assert copy_answers("No numbers here.") == {"first": None, "last": None, "largest": None, "sum": None}
    qs = [
        _t("1", "Sam has 3 and gets 4 more. How many?", "7", [], None),  # sum: 7
        _t("2", "A box holds 10 of 12 eggs, 2 break. How many left?", "8", [], None),  # none of the rules
        _t("3", "Ann reads 6 pages, then 9. How many?", "15", [], None),  # sum: 15
        _t("3", "Ann reads 6 pages, then 9. How many?", "15", [], None),  # the same question again: counted once
    ]
    assert copy_floor(qs) == (2 / 3, "sum")


def test_calculator_validity_grounding_copying_and_loops() -> None:
    q = "Mia has 4 bags of 6 apples and eats 5. How many are left?"
    good = _t("1", q, "19", [
        ("Thought: 4 bags of 6.\nAction: calculate[4*6]", "Observation: 24"),
        ("Thought: she eats 5.\nAction: calculate[24-5]", "Observation: 19"),
        ("Thought: done.\nAction: finish[19]", "Observation: Episode finished"),
    ], "19")  # fmt: skip
    made_up = _t("2", q, "19", [
        ("Thought: hm.\nAction: calculate[4*7]", "Observation: 28"),  # 7 is from nowhere
        ("Thought: hm.\nAction: calculate[4*]", "Observation: Error: cannot parse expression: invalid syntax"),
        ("Thought: hm.\nAction: calculate[4*]", "Observation: Error: cannot parse expression: invalid syntax"),
        ("Thought: hm.\nAction: finish[20]", "Observation: Episode finished"),  # not the last answer (28)
    ], "20")  # fmt: skip
    m = math_skill([good, made_up])
    assert m["calc_calls"] == 5 and m["calc_valid"] == 3 / 5
    # operands: 4, 6 | 24, 5 | 4, 7 | 4 | 4: all but 7 known (24 from the first observation)
    assert m["grounded_operands"] == 7 / 8
    assert m["answer_is_last_observation"] == 1 / 2 and m["loop_rate"] == 1 / 2
    assert m["copy_floor"] == 0.0 and m["copy_floor_rule"] == "first"
    assert m["calls_per_episode"] == 5 / 2 and m["multi_call_share"] == 1.0  # two calls and three
    assert m["accuracy_multi_call"] == 1 / 2 and m["accuracy_single_call"] is None
    one = _t("3", q, "19", [("Thought: all at once.\nAction: calculate[4*6-5]", "Observation: 19"),
                            ("Thought: done.\nAction: finish[19]", "Observation: Episode finished")], "19")  # fmt: skip
    m = math_skill([good, made_up, one])
    assert m["multi_call_share"] == 2 / 3 and m["accuracy_multi_call"] == 1 / 2 and m["accuracy_single_call"] == 1.0


def test_metrics_json_carries_the_math_skill_on_math_sets_only() -> None:
    q = "Sam has 3 and gets 4 more. How many?"
    m = dataset_metrics([_t("1", q, "7", [("Action: calculate[3+4]", "Observation: 7")], None)])
    assert m["copy_floor"] == 1.0 and m["copy_floor_rule"] == "sum" and m["calc_valid"] == 1.0
    assert m["answer_is_last_observation"] is None  # it never finished


def test_the_report_sets_each_math_row_beside_the_base_model_and_the_copy_floor(tmp_path: Path) -> None:
    q = "Sam has 3 and gets 4 more. How many?"  # the sum rule answers 7: the floor is 100% where gt is 7
    right = [("Action: calculate[2*3]", "Observation: 6"), ("Action: finish[6]", "Observation: Episode finished")]
    wrong = [("Action: finish[5]", "Observation: Episode finished")]
    run = tmp_path / "run"
    models = {
        "base": [_t(str(i), f"Sam has {i} and gets 1 more. How many?", "6", [], None) for i in range(40)],
        "vanilla": [
            _t(str(i), q.replace("3", str(i)), "6", right if i < 30 else wrong, "6" if i < 30 else "5")
            for i in range(40)
        ],
    }
    for name, trajs in models.items():
        write_trajectories(trajs, run / "eval" / name / "gsm8k")
        metrics = eval_metrics({"gsm8k": trajs}, {"kind": "transformers"}, "zero-shot")
        write_record(run / "eval" / name / "metrics.json", EvalMetrics.new(**metrics))
    turns = [
        Turn(role="assistant", content="Action: calculate[2*3]", loss=True),
        Turn(role="user", content="Observation: 6"),
        Turn(role="assistant", content="Action: finish[6]", loss=True),
    ]
    gold = Example(id="0", label="positive", messages=turns)  # fmt: skip
    write_examples([gold], RunLayout(run).set_file("vanilla"), DatasetManifest(kind="training-set"))
    write_report(run, {"out": str(run)}, [{"name": "vanilla", "mode": "vanilla", "neg_num": 0}])
    readme = (run / "report/README.md").read_text()
    assert "## Skill on math (beside the base model and a copied number)" in readme
    assert "| vanilla | positive | 1 | 1.00 | 100.0 | 100.0 |" in readme  # the depth of what vanilla was shown
    # vanilla: 30 of 40 right [59.8, 85.8], base 0; the floor: the first number is 6 in 1 of 40 questions (the sum
    # too: a tie goes to the first rule); operands of 2*3 found in the question only where i is 2 or 3: 2 of 60
    assert "| vanilla | gsm8k | 75.0 [59.8, 85.8] | 0.0 | 2.5 (first) | yes | 100.0 | 3.3 | 100.0 | 0.0 |" in readme
    assert "| 100.0 | 3.3 | 100.0 | 0.0 | 0.75 | 0.0 (- / 75.0) |" in readme  # 30 one-call episodes, 10 with none
    assert "| base | gsm8k | 0.0 [0.0, 8.8] | 0.0 | 2.5 (first) | no | - | - | - | 0.0 |" in readme


def test_the_pooled_row_weighs_each_set_by_its_questions_against_each_set_s_own_floor(tmp_path: Path) -> None:
    """A main job of 250 + 250 questions is sized for its pooled interval: the report pools a model's math sets,
    with the floor of each set's own best rule, not one rule for all."""
    right = [("Action: calculate[2*3]", "Observation: 6"), ("Action: finish[6]", "Observation: Episode finished")]
    wrong = [("Action: finish[5]", "Observation: Episode finished")]

    def svamp(i: int, solved: bool) -> Trajectory:  # the sum rule answers every one of these: floor 100%
        t = _t(f"s{i}", f"Ann has {i} and gets 2 more. How many?", str(i + 2), right if solved else wrong,
               str(i + 2) if solved else "5")  # fmt: skip
        return t.model_copy(update={"task": "svamp"})

    gsm8k = [_t(str(i), f"Sam has {i} and gets 1 more. How many?", "6", right if i < 30 else wrong,
                "6" if i < 30 else "5") for i in range(40)]  # fmt: skip
    models = {
        "base": {
            "gsm8k": [_t(str(i), f"Sam has {i} and gets 1 more.", "6", [], None) for i in range(40)],
            "svamp": [svamp(i, False) for i in range(4, 24)],  # answers are 6 to 25: never 5
        },
        "vanilla": {"gsm8k": gsm8k, "svamp": [svamp(i, i < 9) for i in range(4, 24)]},
    }
    run = tmp_path / "run"
    for name, sets in models.items():
        for d, trajs in sets.items():
            write_trajectories(trajs, run / "eval" / name / d)
        metrics = eval_metrics(sets, {"kind": "transformers"}, "zero-shot")
        write_record(run / "eval" / name / "metrics.json", EvalMetrics.new(**metrics))
    write_report(run, {"out": str(run)}, [{"name": "vanilla", "mode": "vanilla", "neg_num": 0}])
    readme = (run / "report/README.md").read_text()
    # svamp alone: 5 of 20, under its floor of 100%; pooled: 35 of 60 [45.7, 69.9] over (1 + 20) / 60 = 35.0
    assert "| vanilla | svamp | 25.0 [11.2, 46.9] | 0.0 | 100.0 (sum) | no |" in readme
    assert "| vanilla | all math (pooled) | 58.3 [45.7, 69.9] | 0.0 | 35.0 (each set's) | yes | 100.0 |" in readme
    assert "| base | all math (pooled) | 0.0 [0.0, 6.0] | 0.0 | 35.0 (each set's) | no |" in readme
    # the accuracy table carries the pooled interval beside the paper's mean over the sets
    assert (
        "| vanilla | 75.0 [59.8, 85.8] (n=40) | 25.0 [11.2, 46.9] (n=20) | 50.0 | 58.3 [45.7, 69.9] (n=60) |" in readme
    )
