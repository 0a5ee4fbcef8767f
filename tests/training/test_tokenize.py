"""The loss mask: exactly the assistant turns of the trajectory, each with its end-of-turn token."""

from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.training.tokenize import IGNORE, encode, encode_all
from nat_ray.types import Example, Turn

pytestmark = pytest.mark.slow  # needs the prepared SmolLM2 folder (tokenizer)


@pytest.fixture(scope="module")
def tokenizer(smollm2: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


def _runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    runs, cur = [], []
    for i, lab in zip(ids, labels, strict=True):
        if lab != IGNORE:
            assert lab == i
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    return [*runs, cur] if cur else runs


def _example(n_turns: int = 2) -> Example:
    msgs = [
        Turn(role="user", content="Solve a math problem with interleaving Thought, Action, Observation steps."),
        Turn(role="assistant", content="I've understood your instruction, start please."),  # prompt: no loss
        Turn(role="user", content="Question: 2+3? Generate … to solve the problem correctly."),
    ]
    for k in range(n_turns - 1):
        msgs += [
            Turn(role="assistant", content=f"Thought: step {k}.\nAction: calculate[{k}+1]", loss=True),
            Turn(role="user", content=f"Observation: {k + 1}"),
        ]
    msgs += [
        Turn(role="assistant", content="Action: finish[5]", loss=True),
        Turn(role="user", content="Observation: Episode finished"),
    ]
    return Example(id="x", label="positive", messages=msgs)


def test_loss_tokens_are_exactly_the_assistant_turns(tokenizer) -> None:
    ex = _example(3)
    e = encode(tokenizer, ex)
    decoded = [tokenizer.decode(r) for r in _runs(e.input_ids, e.labels)]
    expected = [m.content + tokenizer.eos_token for m in ex.messages if m.loss]
    assert decoded == expected
    assert e.truncated_tokens == 0


def test_on_a_shipped_strategyqa_nat_example(tokenizer, tmp_path: Path, strategyqa_files) -> None:
    from nat_ray.storage import read_examples
    from tests.conftest import strategyqa_nat_set

    strategyqa_nat_set(strategyqa_files, tmp_path, tmp_path / "x.jsonl", pos=0, neg=20, sides=("negative",))
    for ex in read_examples(tmp_path / "x.jsonl"):
        e = encode(tokenizer, ex)
        decoded = [tokenizer.decode(r) for r in _runs(e.input_ids, e.labels)]
        assert decoded == [m.content + tokenizer.eos_token for m in ex.messages if m.loss]
        question = ex.messages[2].content
        assert question not in "".join(decoded)  # the question turn (with its hint) never carries loss


def test_truncation_is_counted(tokenizer) -> None:
    e = encode(tokenizer, _example(6), max_length=60)
    assert len(e.input_ids) == 60 and e.truncated_tokens > 0


def test_examples_without_loss_tokens_are_an_error(tokenizer) -> None:
    no_loss = Example(
        id="n", label="positive", messages=[Turn(role="user", content="hi"), Turn(role="assistant", content="yo")]
    )
    with pytest.raises(InputError, match=r"no loss tokens.*drop_no_loss"):
        encode_all(tokenizer, [_example(), no_loss])
    kept, stats = encode_all(tokenizer, [_example(), no_loss], drop_no_loss=True)
    assert len(kept) == 1 and stats["dropped_no_loss"] == 1 and stats["examples"] == 1
    with pytest.raises(InputError, match="no loss tokens"):
        encode_all(tokenizer, [_example(2)], max_length=20)  # all assistant tokens cut
    with pytest.raises(InputError, match="empty"):
        encode_all(tokenizer, [])
    bad = Example(id="b", label="positive", messages=[Turn(role="user", content="hi", loss=True)])
    with pytest.raises(InputError, match="has loss but role 'user'"):
        encode(tokenizer, bad)
