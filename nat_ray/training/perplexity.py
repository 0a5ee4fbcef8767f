"""Held-out perplexity of a checkpoint, the paper's Figure 4: exp of the mean negative log-likelihood of the assistant
tokens of gold trajectories no model of the run trained on, each rendered with the prompt (and hint) its model was
trained under, so a NAT model is measured under its positive hint, as it is asked at inference.

Plain PyTorch on one process (a forward pass, no optimizer): it runs wherever the caller puts it, a Ray task in the
pipeline (``nat_ray.pipeline.heldout``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.prompts import PromptTemplate
from nat_ray.reformat import to_example
from nat_ray.training.data import collate
from nat_ray.training.tokenize import IGNORE, encode_all
from nat_ray.types import Example, Label, Trajectory


@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    examples: int  # those with a loss token left after max_length
    loss_tokens: int
    truncated: int  # examples cut by max_length


def held_out(trajectories: list[Trajectory], n: int, used: set[str]) -> list[Trajectory]:
    """The last ``n`` correct trajectories, in input order (the end of a train file: the questions a run reaches
    last), one per question; ``used``: question ids a model trained on or rolled out, which none may be."""
    chosen: list[Trajectory] = []
    seen: set[str] = set()
    for t in reversed(trajectories):
        if len(chosen) == n:
            break
        if t.label == Label.POSITIVE and t.id not in seen:
            seen.add(t.id)
            chosen.append(t)
    if len(chosen) < n:
        raise InputError(f"study.heldout: {n} held-out positives asked but the trajectories have {len(chosen)}")
    overlap = sorted(seen & used)
    if overlap:
        raise InputError(
            f"study.heldout: {len(overlap)} of the last {n} positives were trained on or rolled out (e.g. question "
            f"{overlap[0]!r}): hold out fewer, or train on fewer (build.pos_num, rollout.limit)"
        )
    return chosen[::-1]


def heldout_examples(trajectories: list[Trajectory], template: PromptTemplate, mode: str) -> list[Example]:
    """The trajectories as ``mode`` trains positives (a preference model's prompt is vanilla's: its pairs carry
    no hint)."""
    return [to_example(template, mode if mode in ("vanilla", "nut", "nat") else "vanilla", t) for t in trajectories]


def perplexity(model: str | Path, examples: list[Example], max_length: int, batch_size: int = 4) -> Perplexity:
    """The model's perplexity on the assistant tokens of ``examples`` (float32; sequences batched by length)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    encoded, stats = encode_all(tokenizer, examples, max_length, drop_no_loss=True)
    encoded.sort(key=lambda e: len(e.input_ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    net = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    nll, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(encoded), batch_size):
            chunk = encoded[i : i + batch_size]
            batch = collate([e.input_ids for e in chunk], [e.labels for e in chunk], pad)
            logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            nll += F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="sum"
            ).item()
            count += int((labels != IGNORE).sum())
    return Perplexity(math.exp(nll / count), len(encoded), count, int(stats["truncated_examples"]))
