"""The training loss: cross-entropy on assistant tokens only, without full-vocabulary logits for every position.

A causal LM's own ``forward(labels=…)`` applies the LM head to every position and upcasts the logits to fp32: for
SmolLM2 that is 2,048 tokens x 49,152 vocab x 4 bytes = 400 MB per sequence, plus as much again for the softmax and
its gradient — most of it for prompt and observation tokens whose labels are -100 anyway. Here the decoder runs once,
the hidden states of the positions that carry a label are picked out, and the head + cross-entropy run over them in
chunks of ``chunk_tokens``; with more than one chunk each chunk's logits are recomputed in the backward pass instead
of kept, so at most one chunk of logits is alive at a time.

Under DeepSpeed ZeRO-3 ``chunk_tokens`` is None: one call of the head per micro-batch. ZeRO-3 gathers a module's
weights collectively each time the module runs, so every rank must run the head equally often; chunk counts that
follow each rank's own number of labelled tokens made gloo abort with mismatched collectives. The head still runs on
the labelled positions only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from nat_ray.training.tokenize import IGNORE


class AssistantLoss(nn.Module):
    """Wraps a Hugging Face causal LM; ``forward`` returns the mean cross-entropy over the tokens with a label.

    The wrapped model stays reachable as ``.lm`` (saved with ``save_pretrained``); DeepSpeed and DDP wrap this module,
    so their parameter hooks see the decoder and the head as they are called.
    """

    def __init__(self, lm: nn.Module, chunk_tokens: int | None = 256) -> None:
        super().__init__()
        self.lm = lm
        self.chunk_tokens = chunk_tokens

    def _decoder(self) -> nn.Module:
        return getattr(self.lm, self.lm.base_model_prefix)

    def _chunk_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.lm.get_output_embeddings()(hidden).float()
        return nn.functional.cross_entropy(logits, targets, reduction="sum")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self._decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        picked, wanted = hidden[:, :-1][keep], targets[keep]
        n = wanted.numel()
        if n == 0:
            # Nothing to learn in this micro-batch; touch the head so every parameter still joins the backward pass
            # (DDP waits for all of them).
            return self.lm.get_output_embeddings()(hidden[:, :1]).sum() * 0.0
        if self.chunk_tokens is None or n <= self.chunk_tokens:
            return self._chunk_nll(picked, wanted) / n
        total = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, n, self.chunk_tokens):
            part = (picked[s : s + self.chunk_tokens], wanted[s : s + self.chunk_tokens])
            total = total + checkpoint(self._chunk_nll, *part, use_reentrant=False)
        return total / n
