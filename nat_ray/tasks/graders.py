"""Graders, identical to the paper's (Reason-Wang/NAT ``api/tools``): math exact match, HotpotQA EM/F1, StrategyQA.

The prediction is the argument of the agent's ``finish[...]`` action.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from fractions import Fraction

from nat_ray.types import Grade

_GT_NUMBER = re.compile(r"#### (\-?[0-9\.\,]+)")


def extract_math_answer(answer: str) -> str:
    """The number after ``#### `` with commas removed when present; else the answer string itself."""
    match = _GT_NUMBER.search(answer)
    return match.group(1).strip().replace(",", "") if match else answer


def as_number(text: str) -> Fraction | None:
    """A number written as the whole text (``18``, ``$1,000``, ``5%``, ``2/3``), or None."""
    cleaned = text.strip().replace(",", "").replace("$", "").replace("%", "").strip()
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def grade_math(gt: str, pred: str | None, numeric: bool = False) -> Grade:
    """Exact string match with the extracted ground truth (the paper's rule). ``numeric=True`` also accepts
    equal numbers written differently (``18.0``, ``$18``, ``1,000``); it is never the default."""
    target = extract_math_answer(str(gt))
    if pred is None:
        return Grade(reward=False)
    if pred == target:
        return Grade(reward=True)
    if numeric:
        a, b = as_number(pred), as_number(target)
        return Grade(reward=a is not None and a == b)
    return Grade(reward=False)


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, drop articles, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


_YES_NO = ("yes", "no", "noanswer")


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token F1 after normalisation; 0 when either side is yes/no/noanswer and they differ."""
    pred = normalize_answer(prediction)
    gt = normalize_answer(ground_truth)
    if (pred in _YES_NO or gt in _YES_NO) and pred != gt:
        return 0.0
    pred_tokens, gt_tokens = pred.split(), gt.split()
    num_same = sum((Counter(pred_tokens) & Counter(gt_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gt_tokens)
    return 2 * precision * recall / (precision + recall)


def grade_qa(gt: str, pred: str | None) -> Grade:
    """HotpotQA: reward is exact match after normalisation; F1 as :func:`f1_score`."""
    if pred is None:
        return Grade(reward=False, em=False, f1=0.0)
    em = normalize_answer(pred) == normalize_answer(gt)
    return Grade(reward=em, em=em, f1=f1_score(pred, gt))


def strategyqa_bool(value: str | bool) -> bool | str:
    """``yes``/``no`` in any case to a bool; any other string stays as it is (and so never equals a bool)."""
    if isinstance(value, bool):
        return value
    low = value.lower()
    return True if low == "yes" else False if low == "no" else value


def parse_bool_gt(gt: str | bool) -> bool:
    """A StrategyQA ground truth: a JSON bool, or its text (``true``/``false``, ``yes``/``no``)."""
    if isinstance(gt, bool):
        return gt
    low = str(gt).strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    raise ValueError(f"not a yes/no ground truth: {gt!r}")


def grade_strategyqa(gt: str | bool, pred: str | None) -> Grade:
    if pred is None:
        return Grade(reward=False)
    return Grade(reward=strategyqa_bool(pred) == parse_bool_gt(gt))
