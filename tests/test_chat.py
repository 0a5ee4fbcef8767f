"""`nat-ray chat`: a real model answers through stdin with the real calculator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nat_ray.chat import chat_prompt
from nat_ray.prompts import get_template

REPO = Path(__file__).resolve().parents[1]


def test_hints_pick_the_question_prompt(data_dir: Path) -> None:
    prompts = data_dir / "nat/prompts/gsm8k/gsm8k_conversation.json"
    load = lambda name: get_template(prompts, name)  # noqa: E731
    nat = load("zero-shot-target-aware")
    assert chat_prompt(load, "correct", None) == (nat, nat.correct_question_prompt)
    assert chat_prompt(load, "incorrect", None) == (nat, nat.incorrect_question_prompt)
    ab = load("zero-shot-target-aware-prefix-AB")
    assert chat_prompt(load, "correct", "zero-shot-target-aware-prefix-AB") == (ab, ab.correct_question_prompt)
    plain = load("zero-shot")
    assert chat_prompt(load, "none", "zero-shot-target-aware") == (plain, plain.question_prompt)


@pytest.mark.slow
def test_chat_answers_a_question_through_stdin(smollm2: Path) -> None:
    """SmolLM2-135M with the one-shot prompt, greedy: the question goes in on stdin, every reply comes out as it
    is made, and the episode ends with the agent's finish action."""
    r = subprocess.run(
        [sys.executable, "-m", "nat_ray.cli", "chat", "--model", "smollm2", "--task", "gsm8k", "--template",
         "one-shot", "--temperature", "0", "--max-tokens", "100"],
        input="Calculate 7 + 8.\n", cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Thought:" in r.stdout and "Action: finish[" in r.stdout
    assert "[finished: answer " in r.stdout
