"""An oracle for the build tests: the paper's training-data loader (Reason-Wang/NAT ``data/utils.py``,
``load_pos_neg_data_with_prompts`` + ``format_sample_with_prompt``), restated step by step from its files.

Positives: the first ``pos_num`` of the positive file. Negatives: ``random.seed(42)`` then
``random.sample(all negatives, neg_num)`` with the global generator. Each sample: the template's conversation turns
with ``loss: False``, a user question turn formatted from the template's prompt (the correct/incorrect prompt by
``info.reward`` for target-aware templates, the F1 class for the graded ones), then the file's own turns.
"""

from __future__ import annotations

import copy
import json
import random


def _questions(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        data = json.load(f) if path.endswith(".json") else [json.loads(line) for line in f]
    return {q["id"]: q for q in data}


def _question_prompt(prompt: dict, template: str, info: dict) -> str:
    if template in ("zero-shot", "cot-zero-shot"):
        return prompt["question_prompt"]
    if template == "zero-shot-target-aware-four-class":
        f1 = info["f1"]
        k = 1 if f1 == 0.0 else 2 if f1 < 0.4 else 3 if f1 < 1.0 else 4
        return prompt[f"class_{k}_question_prompt"]
    if template == "zero-shot-target-aware-three-class":
        f1 = info["f1"]
        k = 1 if f1 == 0.0 else 2 if f1 < 1.0 else 3
        return prompt[f"class_{k}_question_prompt"]
    return prompt["correct_question_prompt"] if info["reward"] else prompt["incorrect_question_prompt"]


def _format(traj: dict, question: str, prompts: dict, template: str) -> dict:
    prompt = prompts[template]
    messages = copy.deepcopy(prompt["conversations"])
    for m in messages:
        m["loss"] = False
    content = _question_prompt(prompt, template, traj["info"]).format(question=question)
    out = copy.deepcopy(traj)
    out["conversations"] = [*messages, {"role": "user", "content": content, "loss": False}, *traj["conversations"]]
    return out


def paper_examples(
    pos_path: str, neg_path: str, prompt_path: str, template: str, question_path: str, pos_num: int, neg_num: int
) -> list[dict]:
    with open(prompt_path, encoding="utf-8") as f:
        prompts = json.load(f)
    questions = _questions(question_path)

    def load(path: str) -> list[dict]:
        with open(path, encoding="utf-8") as f:
            return [_format(t, questions[t["id"]]["question"], prompts, template) for t in json.load(f)]

    pos = load(pos_path)[:pos_num]
    neg = load(neg_path)
    state = random.getstate()
    try:
        random.seed(42)
        neg = random.sample(neg, neg_num)
    finally:
        random.setstate(state)
    return pos + neg
