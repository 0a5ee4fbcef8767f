"""Training examples -> token ids with an assistant-only loss mask, using the model's own chat template.

Each message's text span in the rendered conversation is found by rendering growing prefixes: an assistant turn
spans from the end of ``render(messages[:k], add_generation_prompt=True)`` to the end of ``render(messages[:k+1])``,
so it includes the end-of-turn token (the model learns to stop). Tokens whose characters fall in the span of a
message with ``loss: true`` keep their ids as labels; every other label is -100 (prompt turns and the question turn
never carry loss). Sequences longer than ``max_length`` are cut, and the cut is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nat_ray.errors import InputError
from nat_ray.types import Example

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    id: str
    input_ids: list[int]
    labels: list[int]
    truncated_tokens: int  # tokens cut off by max_length

    @property
    def loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def loss_spans(tokenizer: Any, example: Example) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans that carry loss."""
    messages = [{"role": m.role, "content": m.content} for m in example.messages]
    full = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for k, m in enumerate(example.messages):
        if not m.loss:
            continue
        if m.role != "assistant":
            raise InputError(f"example {example.id!r}: message {k} has loss but role {m.role!r}")
        before = _render(tokenizer, messages[:k], generation_prompt=True)
        upto = _render(tokenizer, messages[: k + 1], generation_prompt=False)
        if not (full.startswith(upto) and upto.startswith(before)):
            raise InputError("the chat template of this tokenizer does not render conversations prefix by prefix")
        end = len(upto.rstrip())  # the end-of-turn token, not the line break after it
        spans.append((len(before), end))
    return full, spans


def encode(tokenizer: Any, example: Example, max_length: int = 4096) -> Encoded:
    text, spans = loss_spans(tokenizer, example)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    span_index = 0
    for i, (start, end) in enumerate(enc["offset_mapping"]):
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= start < spans[span_index][1] and end > start:
            labels[i] = ids[i]
    cut = max(0, len(ids) - max_length)
    return Encoded(example.id, ids[:max_length], labels[:max_length], cut)


def encode_all(
    tokenizer: Any, examples: list[Example], max_length: int = 4096, drop_no_loss: bool = False
) -> tuple[list[Encoded], dict]:
    """Encode a training set. Examples with no loss token left (no assistant turn, or all cut by ``max_length``) are
    an error, or, with ``drop_no_loss``, dropped and counted."""
    if not examples:
        raise InputError("the training set is empty")
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("a fast tokenizer is needed (character offsets for the loss mask)")
    encoded = [encode(tokenizer, e, max_length) for e in examples]
    empty = [e.id for e in encoded if e.loss_tokens == 0]
    if empty and not drop_no_loss:
        raise InputError(
            f"{len(empty)} examples have no loss tokens (e.g. id {empty[0]!r}): no assistant turn, or cut by "
            f"max_length; set train.drop_no_loss=true to train without them"
        )
    encoded = [e for e in encoded if e.loss_tokens > 0]
    if not encoded:
        raise InputError("no example has a loss token")
    return encoded, encoding_stats(encoded, len(encoded), len(empty))


def encoding_stats(sequences: list[Encoded], examples: int, dropped: int) -> dict:
    """A training set's figures over its encoded sequences (a preference row holds two)."""
    return {
        "dropped_no_loss": dropped,
        "examples": examples,
        "tokens": sum(len(e.input_ids) for e in sequences),
        "loss_tokens": sum(e.loss_tokens for e in sequences),
        "truncated_examples": sum(1 for e in sequences if e.truncated_tokens),
        "truncated_tokens": sum(e.truncated_tokens for e in sequences),
    }
