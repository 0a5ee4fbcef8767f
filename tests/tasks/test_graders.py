from __future__ import annotations

import pytest

from nat_ray.tasks.graders import (
    extract_math_answer,
    f1_score,
    grade_math,
    grade_qa,
    grade_strategyqa,
    normalize_answer,
)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18"),
        ("#### 1,000", "1000"),
        ("#### -3.5", "-3.5"),
        ("#### 1,234,567.5", "1234567.5"),
        ("9", "9"),  # ASDiv: no '#### ', the answer string itself
        ("1,000", "1,000"),  # commas only removed after '#### '
        ("####18", "####18"),  # the paper's pattern needs the space
    ],
)
def test_extract_math_answer(answer: str, expected: str) -> None:
    assert extract_math_answer(answer) == expected


def test_math_exact_string_match_is_the_default() -> None:
    gt = "text\n#### 18"
    assert grade_math(gt, "18").reward
    for pred in ("18.0", "$18", " 18", "18 ", "eighteen"):
        assert not grade_math(gt, pred).reward, pred
    assert grade_math("#### 1,000", "1000").reward
    assert not grade_math("#### 1,000", "1,000").reward
    assert not grade_math(gt, None).reward


def test_math_numeric_mode_compares_numbers() -> None:
    assert grade_math("#### 18", "18.0", numeric=True).reward
    assert grade_math("#### 18", "$18", numeric=True).reward
    assert grade_math("#### 1,000", "1,000", numeric=True).reward
    assert grade_math("#### 0.5", "1/2", numeric=True).reward
    assert not grade_math("#### 18", "18.5", numeric=True).reward
    assert not grade_math("#### 18", "about 18", numeric=True).reward


def test_math_grade_has_no_em_or_f1() -> None:
    g = grade_math("#### 3", "3")
    assert (g.em, g.f1) == (None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Beatles", "beatles"),
        ("  A  man,  a plan! ", "man plan"),
        ("An apple. THE END", "apple end"),
        ("theater", "theater"),  # articles only as whole words
        ("Richard-Strauss", "richardstrauss"),  # punctuation dropped, not replaced by a space
    ],
)
def test_squad_normalisation(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_qa_em_and_f1() -> None:
    g = grade_qa("Richard Strauss", "the richard strauss.")
    assert g.reward and g.em and g.f1 == 1.0
    g = grade_qa("Richard Strauss", "Strauss")
    assert not g.reward and not g.em
    assert g.f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    g = grade_qa("1970s and 1980s", "the 1970s")
    assert g.f1 == pytest.approx(2 * 1.0 * (1 / 3) / (1 + 1 / 3))
    assert grade_qa("abc", "xyz").f1 == 0.0
    assert grade_qa("abc", None).f1 == 0.0


def test_qa_f1_is_zero_for_mismatched_yes_no() -> None:
    assert f1_score("yes", "yes") == 1.0
    assert f1_score("yes it is", "yes") == 0.0  # gt is yes, pred differs
    assert f1_score("no", "no way") == 0.0  # pred is no, gt differs
    assert f1_score("noanswer", "the answer") == 0.0
    assert f1_score("Yes.", "yes") == 1.0  # normalised before the rule
    assert grade_qa("yes", "no").f1 == 0.0


def test_qa_reward_is_em() -> None:
    g = grade_qa("Paris", "Paris, France")
    assert g.reward is False and g.em is False and 0 < g.f1 < 1


@pytest.mark.parametrize(
    ("gt", "pred", "reward"),
    [
        (True, "Yes", True),
        (True, "yes", True),
        (True, "YES", True),
        (False, "No", True),
        (False, "no", True),
        (True, "No", False),
        (False, "Yes", False),
        (True, "Yes.", False),  # exactly yes/no, as the paper
        (True, "True", False),
        (False, "maybe", False),
        (True, None, False),
        ("true", "yes", True),  # the stored text form of the ground truth
        ("false", "No", True),
    ],
)
def test_strategyqa(gt, pred, reward: bool) -> None:
    assert grade_strategyqa(gt, pred).reward is reward


def test_strategyqa_rejects_non_boolean_ground_truth() -> None:
    with pytest.raises(ValueError, match="yes/no"):
        grade_strategyqa("perhaps", "yes")
