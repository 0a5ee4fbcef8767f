"""Held-out perplexity (the paper's Figure 4) on a tiny random Llama, against Hugging Face's own loss."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.training.perplexity import held_out, heldout_examples, perplexity
from nat_ray.types import Example, Label, Trajectory, Turn


def _example(i: int, answer: str) -> Example:
    return Example(
        id=str(i),
        label="positive",
        messages=[
            Turn(role="user", content=f"What is {i} + {i}?"),
            Turn(role="assistant", content=answer, loss=True),
            Turn(role="user", content="Observation: ok"),
            Turn(role="assistant", content=f"Finish[{2 * i}]", loss=True),
        ],
    )


def test_perplexity_is_the_models_own_loss_on_the_assistant_tokens(tmp_path: Path, smollm2: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nat_ray.training.tokenize import encode
    from tests.training.test_train_ray import tiny_llama_folder

    model = tiny_llama_folder(tmp_path / "tiny", smollm2)
    examples = [_example(i, "Thought: add them. " * (1 + i % 3)) for i in range(5)]
    tok, net = AutoTokenizer.from_pretrained(model), AutoModelForCausalLM.from_pretrained(model).eval()
    nll = count = 0.0
    for e in examples:  # one at a time, no padding: Hugging Face's mean loss over the labelled tokens
        enc = encode(tok, e)
        n = sum(1 for x in enc.labels[1:] if x != -100)
        with torch.inference_mode():
            loss = net(input_ids=torch.tensor([enc.input_ids]), labels=torch.tensor([enc.labels])).loss.item()
        nll, count = nll + loss * n, count + n
    batched = perplexity(model, examples, max_length=1024, batch_size=4)  # padded batches of mixed lengths
    assert batched.examples == 5 and batched.loss_tokens == count and batched.truncated == 0
    assert batched.perplexity == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert perplexity(model, examples, 1024, batch_size=1).perplexity == pytest.approx(batched.perplexity, rel=1e-4)


def _traj(i: int, label: Label) -> Trajectory:
    turns = [Turn(role="assistant", content=f"Thought: {i}", loss=True)]
    return Trajectory(id=f"q{i}", task="gsm8k", question=f"Q{i}", ground_truth=str(i), turns=turns, label=label)


def test_the_held_out_positives_are_the_last_ones_and_never_trained_on() -> None:
    trajs = [_traj(i, Label.POSITIVE) for i in range(10)] + [_traj(10, Label.NEGATIVE), _traj(9, Label.POSITIVE)]
    assert [t.id for t in held_out(trajs, 3, used={"q0", "q1"})] == ["q7", "q8", "q9"]  # input order, one a question
    with pytest.raises(InputError, match=r"study.heldout: 1 of the last 3 positives were trained on .*'q8'"):
        held_out(trajs, 3, used={"q8"})
    with pytest.raises(InputError, match=r"study.heldout: 20 held-out positives asked but the trajectories have 10"):
        held_out(trajs, 20, used=set())


def test_each_model_is_measured_under_the_prompt_it_was_trained_with(data_dir: Path) -> None:
    from nat_ray.prompts import get_template
    from nat_ray.tasks import get_task, prompts_file

    prompts = prompts_file(get_task("gsm8k"), data_dir)
    gold = [_traj(1, Label.POSITIVE)]
    vanilla = heldout_examples(gold, get_template(prompts, "zero-shot"), "vanilla")[0]
    nat = heldout_examples(gold, get_template(prompts, "zero-shot-target-aware"), "nat")[0]
    dpo = heldout_examples(gold, get_template(prompts, "zero-shot"), "dpo")[0]
    assert dpo == vanilla and nat.messages[-1] == vanilla.messages[-1]  # the same gold turns
    assert nat.messages[:-1] != vanilla.messages[:-1]  # NAT's positive hint in its question
