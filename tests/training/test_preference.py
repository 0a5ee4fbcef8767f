"""DPO and KTO: the losses, assistant-only log-probabilities over multi-turn trajectories, the reference computed once
per set and model, and both objectives trained end to end under DDP and DeepSpeed ZeRO-3 (the pipeline test)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nat_ray.training.preference import (
    PreferenceLoss,
    balanced_weights,
    collate_preference,
    dpo_loss,
    encode_preference,
    kto_loss,
)
from nat_ray.training.tokenize import IGNORE
from nat_ray.types import Message, PreferencePair
from tests.training.test_train_ray import tiny_llama_folder


def test_dpo_and_kto_losses_match_a_hand_computed_case() -> None:
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -3.5]), torch.tensor([-12.5, -4.0])  # the reference differs per completion
    # margins: (-10 - -11) - (-12 - -12.5) = 0.5 and (-4 - -3.5) - (-3 - -4) = -1.5; -logsigmoid(0.1 x margin), averaged
    want = (-math.log(1 / (1 + math.exp(-0.05))) - math.log(1 / (1 + math.exp(0.15)))) / 2
    assert dpo_loss(pc, pr, rc, rr, beta=0.1).item() == pytest.approx(want, abs=1e-6)
    # a loss without the reference, or with its two terms swapped, is another number here
    assert dpo_loss(pc, pr, rc, rc, beta=0.1).item() != pytest.approx(want, abs=1e-3)
    assert dpo_loss(pc, pr, rr, rc, beta=0.1).item() != pytest.approx(want, abs=1e-3)
    logps, ref = torch.tensor([-5.0, -7.0, -2.0]), torch.tensor([-6.0, -6.0, -2.0])
    desirable = torch.tensor([True, False, True])
    kl_pol, kl_ref = torch.tensor([-9.0, -8.0, -7.0]), torch.tensor([-9.5, -8.5, -7.5])  # KL estimate 0.5
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = (2.0 * (1 - sig(0.5 * (1 - 0.5))) + 3.0 * (1 - sig(0.5 * (0.5 + 1))) + 2.0 * (1 - sig(0.5 * (0 - 0.5)))) / 3
    got = kto_loss(logps, ref, desirable, kl_pol, kl_ref, beta=0.5, desirable_weight=2.0, undesirable_weight=3.0)
    assert got.item() == pytest.approx(want, abs=1e-6)
    # a negative KL estimate is clamped at 0
    clamped = kto_loss(logps, ref, desirable, kl_ref, kl_pol, 0.5, 2.0, 3.0)
    assert clamped.item() == pytest.approx((2 * (1 - sig(0.5)) + 3 * (1 - sig(0.5)) + 2 * 0.5) / 3, abs=1e-6)
    assert balanced_weights(30, 10) == (40 / 60, 40 / 20)


def test_kto_gradient_does_not_flow_into_the_kl_estimate() -> None:
    """TRL detaches the KL estimate: it is a baseline that shifts the rewards, not a term to optimise."""
    logps = torch.tensor([-5.0, -7.0, -2.0], requires_grad=True)
    kl_pol = torch.tensor([-9.0, -8.0, -7.0], requires_grad=True)  # KL estimate +0.5: not clamped away
    ref, kl_ref = torch.tensor([-6.0, -6.0, -2.0]), torch.tensor([-9.5, -8.5, -7.5])
    kto_loss(logps, ref, torch.tensor([True, False, True]), kl_pol, kl_ref, 0.5, 2.0, 3.0).backward()
    assert logps.grad is not None and bool((logps.grad != 0).all())
    assert kl_pol.grad is None or bool((kl_pol.grad == 0).all())


def _pair(i: int) -> PreferencePair:
    prompt = [Message(role="user", content=f"Question: is {i} even?")]
    step = [Message(role="assistant", content="Thought: search.\nAction: search[parity]"),
            Message(role="user", content="Observation: ZEBRA QUOKKA parity facts")]  # fmt: skip
    end = lambda a: [Message(role="assistant", content=f"Action: finish[{a}]"),  # noqa: E731
                     Message(role="user", content="Observation: Episode finished")]  # fmt: skip
    return PreferencePair(id=str(i), prompt=prompt, chosen=step + end("yes"), rejected=step + end("no"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smollm2: Path) -> Path:
    return tiny_llama_folder(tmp_path_factory.mktemp("tiny"), smollm2)


def test_only_assistant_tokens_of_every_turn_carry_the_loss(tiny: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    rows, stats = encode_preference(tok, [_pair(1), _pair(2)], max_length=512, drop_no_loss=False)
    chosen_ids, chosen_labels = rows[0]["input_ids"][0], rows[0]["labels"][0]
    learned = tok.decode([t for t, y in zip(chosen_ids, chosen_labels, strict=True) if y != IGNORE])
    assert "search[parity]" in learned and "finish[yes]" in learned  # both assistant turns
    assert "ZEBRA" not in learned and "Observation" not in learned and "Question" not in learned
    assert stats["examples"] == 2 and stats["loss_tokens"] == sum(
        y != IGNORE for r in rows for s in r["labels"] for y in s
    )
    # the gradient reaches the observation only as context: its own tokens are never predicted
    module = PreferenceLoss(AutoModelForCausalLM.from_pretrained(tiny), "dpo", beta=0.1)
    head_rows: list[int] = []
    module.lm.get_output_embeddings().register_forward_hook(lambda _m, args, _o: head_rows.append(args[0].shape[0]))
    batch = collate_preference([r | {"ref_logps": [0.0, 0.0]} for r in rows], tok.pad_token_id)
    loss = module(**batch)
    labelled = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert sum(head_rows) == labelled  # the head ran on the assistant positions only
    loss.backward()
    emb = module.lm.get_input_embeddings().weight.grad
    zebra = tok(" ZEBRA QUOKKA", add_special_tokens=False)["input_ids"]
    assert emb is not None and all(emb[t].abs().sum() > 0 for t in zebra)  # context: it does shape later turns


def test_the_loss_reports_its_rewards_as_trl_logs_them(tiny: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    rows, _ = encode_preference(tok, [_pair(i) for i in range(4)], max_length=512, drop_no_loss=False)
    lm = AutoModelForCausalLM.from_pretrained(tiny)
    batch = collate_preference([r | {"ref_logps": [0.0, 0.0]} for r in rows], tok.pad_token_id)
    module = PreferenceLoss(lm, "dpo", beta=0.5)
    with torch.no_grad():
        logps = module.sequence_logps(batch["input_ids"], batch["attention_mask"], batch["labels"])
        ref = logps + torch.tensor([0.2, -0.4, 0.6, 0.0, 0.0, 0.0, 0.2, 0.0])  # the reference, moved per sequence
        module(**batch | {"ref_logps": ref})
    margins = 0.5 * ((logps[:4] - ref[:4]) - (logps[4:] - ref[4:]))  # -0.1, 0.2, -0.2, 0.0
    assert module.stats["reward_accuracy"] == (1.0, 4)  # only the second pair's chosen gained on its rejected
    assert module.stats["reward_margin"][0] == pytest.approx(float(margins.sum()), abs=1e-4)
    kto = PreferenceLoss(lm, "kto", beta=0.5)
    desirable = torch.tensor([True, False, True, False])
    with torch.no_grad():
        kto(**batch | {"ref_logps": ref, "desirable": desirable})
    ratios = 0.5 * (logps - ref)
    assert kto.stats["reward_desirable"][1] == 2 and kto.stats["reward_undesirable"][1] == 2
    assert kto.stats["reward_desirable"][0] == pytest.approx(float(ratios[0] + ratios[2]), abs=1e-4)
    assert kto.stats["reward_undesirable"][0] == pytest.approx(float(ratios[1] + ratios[3]), abs=1e-4)
    assert kto.stats["kl"][0] == pytest.approx(float((logps[4:] - ref[4:]).sum()), abs=1e-4)


def test_reference_logps_are_computed_once_per_set_and_model(tiny: Path, tmp_path: Path, smollm2: Path) -> None:
    from transformers import AutoTokenizer

    from nat_ray.training.reference import attach_reference

    tok = AutoTokenizer.from_pretrained(tiny)
    rows, _ = encode_preference(tok, [_pair(i) for i in range(5)], 512, False)
    data = tmp_path / "dpo.jsonl"
    first, done = attach_reference(rows, tiny, data, "float32", batch_size=2)
    assert done["computed"] and done["forwards"] == 3  # 5 rows in batches of 2
    again, done = attach_reference(rows, tiny, data, "float32", batch_size=2)
    assert not done["computed"] and done["forwards"] == 0 and again == first
    assert all(len(r["ref_logps"]) == 2 and r["ref_logps"][0] < 0 for r in first)
    other = tiny_llama_folder(tmp_path / "other", smollm2)  # same architecture, other weights
    torch.manual_seed(1)
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(other)
    with torch.no_grad():
        m.model.embed_tokens.weight.mul_(1.5)
    m.save_pretrained(other)
    _, done = attach_reference(rows, other, data, "float32", batch_size=2)
    assert done["computed"] and done["forwards"] == 3  # another model: recomputed, not reused
    _, done = attach_reference(rows[:4], other, data, "float32", batch_size=2)
    assert done["computed"]  # another set


# Both objectives train end to end (DPO under DDP, KTO under ZeRO-3) in tests/pipeline/test_pipeline_ray.py.
