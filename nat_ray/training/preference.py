"""Preference objectives on trajectories: DPO and KTO losses, the sets encoded for them, and the module that computes
them on the workers (``train.objective: dpo | kto``; ``sft`` is :mod:`nat_ray.training.loss`).

A sequence's log-probability is the sum over its assistant tokens only: prompt and tool-observation tokens are masked
exactly as the SFT loss masks them (the same :func:`~nat_ray.training.tokenize.encode`), in every turn. The frozen
reference's log-probabilities are computed once before training and travel with each row
(:mod:`nat_ray.training.reference`), so no worker holds a second model.

Each row holds two sequences: DPO's chosen and rejected; KTO's completion and a mismatched one (its prompt with the
completion of the next record of another question, fixed when the set is encoded) whose policy-vs-reference log-ratio
estimates the KL term, as TRL pairs a batch's prompts with shifted completions. The losses follow TRL's
(``DPOTrainer`` sigmoid loss, ``KTOTrainer`` loss ``kto``): DPO ``-logsigmoid(beta * ((pc - rc) - (pr - rr)))``
averaged over pairs; KTO ``w_d (1 - sigmoid(beta (r - z)))`` for desirable and ``w_u (1 - sigmoid(beta (z - r)))``
for undesirable completions, averaged, with ``z`` the batch's mean KL log-ratio, detached and clamped at 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from nat_ray.errors import InputError
from nat_ray.training.loss import AssistantLoss
from nat_ray.training.objectives import OBJECTIVES
from nat_ray.training.tokenize import IGNORE, Encoded, encode, encoding_stats
from nat_ray.types import Example, LabelledCompletion, Message, PreferencePair, Turn


def dpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float
) -> torch.Tensor:
    logits = (chosen - ref_chosen) - (rejected - ref_rejected)
    return -F.logsigmoid(beta * logits).mean()


def kto_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    beta: float,
    desirable_weight: float,
    undesirable_weight: float,
) -> torch.Tensor:
    kl = (kl_logps - ref_kl_logps).mean().detach()
    if torch.distributed.is_available() and torch.distributed.is_initialized():  # TRL gathers it over processes
        torch.distributed.all_reduce(kl)
        kl = kl / torch.distributed.get_world_size()
    kl = kl.clamp(min=0)
    ratio = logps - ref_logps
    good = desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio)))
    return torch.where(desirable.bool(), good, bad).mean()


def balanced_weights(desirable: int, undesirable: int) -> tuple[float, float]:
    """KTO's class weights when none are given: each class weighs as much in total (n / 2 per class)."""
    n = desirable + undesirable
    return n / (2 * desirable), n / (2 * undesirable)


def _example(record_id: str, prompt: list[Message], completion: list[Message]) -> Example:
    turns = [Turn(role=m.role, content=m.content) for m in prompt]
    turns += [Turn(role=m.role, content=m.content, loss=m.role == "assistant") for m in completion]
    return Example(id=record_id, label="", messages=turns)


def encode_preference(
    tokenizer: Any, records: list[PreferencePair] | list[LabelledCompletion], max_length: int, drop_no_loss: bool
) -> tuple[list[dict], dict]:
    """Rows of two sequences each (see the module), and the set's statistics (as ``encode_all`` counts them)."""
    if not records:
        raise InputError("the training set is empty")
    rows, empty, seqs = [], [], []
    kto = isinstance(records[0], LabelledCompletion)
    for i, r in enumerate(records):
        if isinstance(r, PreferencePair):
            pair = (_example(r.id, r.prompt, r.chosen), _example(r.id, r.prompt, r.rejected))
        else:
            other = next((o for o in records[i + 1 :] + records[:i] if o.id != r.id), None)  # type: ignore[operator]
            if other is None:
                raise InputError("a KTO set needs records of two questions or more (the KL term pairs across them)")
            pair = (_example(r.id, r.prompt, r.completion), _example(r.id, r.prompt, other.completion))  # type: ignore[union-attr]
        encoded: list[Encoded] = [encode(tokenizer, e, max_length) for e in pair]
        if any(e.loss_tokens == 0 for e in encoded):
            empty.append(r.id)
            continue
        seqs += encoded
        row = {"input_ids": [e.input_ids for e in encoded], "labels": [e.labels for e in encoded]}
        rows.append(row | {"desirable": bool(r.label) if kto else True})  # type: ignore[union-attr]
    if empty and not drop_no_loss:
        raise InputError(
            f"{len(empty)} records have a sequence with no loss token (e.g. id {empty[0]!r}): cut by max_length; "
            "set train.drop_no_loss=true to train without them"
        )
    if not rows:
        raise InputError("no record has a loss token in both of its sequences")
    stats = encoding_stats(seqs, len(rows), len(empty))
    if kto:
        stats["desirable"] = sum(r["desirable"] for r in rows)
        stats["undesirable"] = len(rows) - stats["desirable"]
        if not stats["desirable"] or not stats["undesirable"]:
            raise InputError("a KTO set needs desirable and undesirable records")
    return rows, stats


def collate_preference(rows: list[dict], pad_id: int) -> dict:
    """A micro-batch of B rows as 2B sequences (every row's first, then every row's second), with their reference
    log-probabilities (``ref_logps``, 2B) and which rows are desirable (B)."""
    from nat_ray.training.data import collate

    ids = [r["input_ids"][k] for k in (0, 1) for r in rows]
    labels = [r["labels"][k] for k in (0, 1) for r in rows]
    batch = collate(ids, labels, pad_id)
    batch["ref_logps"] = torch.tensor([r["ref_logps"][k] for k in (0, 1) for r in rows], dtype=torch.float32)
    batch["desirable"] = torch.tensor([bool(r["desirable"]) for r in rows])
    return batch


# What each objective reports besides its loss, as TRL logs them: ``beta x (policy - reference)`` log-ratios. DPO:
# the share of pairs whose chosen gains on the rejected (``reward_accuracy``) and the mean margin; KTO: the mean
# reward of desirable and of undesirable completions, and the KL estimate. Fixed per objective: every rank reports
# every key (with a count of 0 where its micro-batch had none), so the all-reduce is the same on all of them.
STAT_KEYS = {name: OBJECTIVES[name].stat_keys for name in ("dpo", "kto")}


class PreferenceLoss(AssistantLoss):
    """DPO or KTO on a batch from :func:`collate_preference`; without ``ref_logps`` (the dev set) the SFT loss.
    After each forward, ``stats`` holds ``{key: (sum, count)}`` over the micro-batch for :data:`STAT_KEYS`."""

    def __init__(self, lm: nn.Module, objective: str, beta: float, weights: tuple[float, float] = (1.0, 1.0),
                 sft_weight: float = 0.0, chunk_tokens: int | None = 256) -> None:  # fmt: skip
        super().__init__(lm, chunk_tokens)
        self.objective, self.beta, self.weights, self.sft_weight = objective, beta, weights, sft_weight
        self.stats: dict[str, tuple[float, int]] = {}

    def _chunk_logps(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.lm.get_output_embeddings()(hidden).float()
        return -F.cross_entropy(logits, targets, reduction="none")

    def sequence_logps(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Each sequence's summed log-probability of its labelled (assistant) tokens."""
        hidden = self._decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        rows = keep.nonzero()[:, 0]
        picked, wanted = hidden[:, :-1][keep], targets[keep]
        step = self.chunk_tokens or max(1, wanted.numel())
        parts = []
        for s in range(0, wanted.numel(), step):
            part = (picked[s : s + step], wanted[s : s + step])
            parts.append(
                checkpoint(self._chunk_logps, *part, use_reentrant=False)
                if self.chunk_tokens
                else self._chunk_logps(*part)
            )
        token_logps = torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)
        return torch.zeros(len(input_ids), dtype=torch.float32, device=hidden.device).index_add(0, rows, token_logps)

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        ref_logps: torch.Tensor | None = None,
        desirable: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if ref_logps is None:
            return super().forward(input_ids, attention_mask, labels)
        logps = self.sequence_logps(input_ids, attention_mask, labels)
        b = len(input_ids) // 2
        log_ratios = (logps - ref_logps).detach()
        rewards = self.beta * log_ratios
        if self.objective == "dpo":
            loss = dpo_loss(logps[:b], logps[b:], ref_logps[:b], ref_logps[b:], self.beta)
            margin = rewards[:b] - rewards[b:]
            self.stats = {"reward_accuracy": (float((margin > 0).sum()), b), "reward_margin": (float(margin.sum()), b)}
        else:
            assert desirable is not None
            loss = kto_loss(logps[:b], ref_logps[:b], desirable, logps[b:], ref_logps[b:], self.beta, *self.weights)
            good = desirable.bool()
            self.stats = {
                "reward_desirable": (float(rewards[:b][good].sum()), int(good.sum())),
                "reward_undesirable": (float(rewards[:b][~good].sum()), int((~good).sum())),
                "kl": (float(log_ratios[b:].sum()), b),  # the mismatched pairs' log-ratio, before the mean
            }
        if self.sft_weight:  # an SFT term on the chosen / desirable completions: mean NLL per labelled token
            good = desirable if desirable is not None else torch.ones(b, dtype=torch.bool)
            n = (labels[:b][good][:, 1:] != IGNORE).sum().clamp(min=1)
            loss = loss - self.sft_weight * logps[:b][good].sum() / n
        return loss
