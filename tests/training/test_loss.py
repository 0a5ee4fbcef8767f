"""The assistant-only loss: the model's own loss, without full-vocabulary logits at every position."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from nat_ray.training.loss import AssistantLoss
from nat_ray.training.tokenize import IGNORE


def _tiny(tied: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config).float()


def _batch() -> dict:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (3, 40), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0  # a padded row
    labels = torch.full_like(ids, IGNORE)
    labels[0, 5:20] = ids[0, 5:20]
    labels[1, 10:30] = ids[1, 10:30]
    labels[2, 25:40] = ids[2, 25:40]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize(("chunk", "tied"), [(4096, True), (7, True), (7, False), (None, True)])
def test_loss_and_gradients_match_the_models_own_loss(chunk: int | None, tied: bool) -> None:
    batch = _batch()
    ours_model, ref_model = _tiny(tied), _tiny(tied)
    ours = AssistantLoss(ours_model, chunk_tokens=chunk)(**batch)
    ref = ref_model(**batch).loss  # the model's own loss: full logits at every position
    assert torch.allclose(ours, ref, atol=1e-5), (ours.item(), ref.item())
    ours.backward()
    ref.backward()
    for (name, a), (_, b) in zip(ours_model.named_parameters(), ref_model.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_a_batch_without_labels_gives_zero_loss_and_zero_gradients() -> None:
    batch = _batch()
    batch["labels"] = torch.full_like(batch["labels"], IGNORE)
    model = _tiny(tied=False)
    loss = AssistantLoss(model)(**batch)
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_the_head_runs_only_on_labelled_positions() -> None:
    batch = _batch()
    model = _tiny()
    rows: list[int] = []
    model.lm_head.register_forward_hook(lambda _m, inp, _out: rows.append(inp[0].reshape(-1, 32).shape[0]))
    AssistantLoss(model, chunk_tokens=20)(**batch)
    labelled = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert sum(rows) == labelled == 50 and max(rows) <= 20  # 3 chunks, never all 120 positions
