"""Our DPO and KTO losses equal TRL's (``DPOTrainer`` / ``KTOTrainer``, 1.16) on the same batch, to 1e-5.

TRL builds and tokenises the batch from single-turn conversational records, and computes its loss with its own policy
and reference forward passes; ours takes the same tensors (the completion mask as our labels), the same two models,
and :class:`~nat_ray.training.preference.PreferenceLoss`. ``trl`` is a test-only dependency (the ``dev`` extra)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nat_ray.training.preference import PreferenceLoss, dpo_loss, kto_loss
from nat_ray.training.tokenize import IGNORE
from tests.training.test_train_ray import tiny_llama_folder


@pytest.fixture(scope="module")
def models(tmp_path_factory, smollm2: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny = tiny_llama_folder(tmp_path_factory.mktemp("tiny"), smollm2)
    policy, reference = AutoModelForCausalLM.from_pretrained(tiny), AutoModelForCausalLM.from_pretrained(tiny)
    torch.manual_seed(4)  # a policy whose KL estimate on the KTO batch is positive (+0.62): KTO's clamp keeps it
    with torch.no_grad():  # the policy a little away from the reference: non-zero log-ratios
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return AutoTokenizer.from_pretrained(tiny), policy, reference


def _prompt(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Question: is {i} an even number? Think, then answer."}]


# KTO's completions, unlike each other, so its KL term (each prompt with another record's completion) is not the
# matched pairs' log-ratio under another name
KTO_REPLIES = [
    "Action: finish[yes]", "Thought: 1 is odd, so no.\nAction: finish[no]", "Action: calculate[2 * 7]",
    "Thought: even numbers end in 0, 2, 4, 6 or 8.\nAction: finish[yes]", "Action: search[parity of 4]",
    "Thought: I am not sure.\nAction: finish[maybe]",
]  # fmt: skip


def _reply(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _logps(model, input_ids, attention_mask, completion_mask) -> torch.Tensor:  # type: ignore[no-untyped-def]
    labels = input_ids.masked_fill(completion_mask == 0, IGNORE)
    with torch.no_grad():
        return PreferenceLoss(model, "dpo", beta=0.1).sequence_logps(input_ids, attention_mask, labels)


def test_dpo_loss_equals_trl(models, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok, policy, reference = models
    records = [
        {"prompt": _prompt(i), "chosen": _reply(f"Action: finish[{'yes' if i % 2 == 0 else 'no'}]"),
         "rejected": _reply(f"Thought: maybe {i}.\nAction: finish[maybe]")}
        for i in range(4)
    ]  # fmt: skip
    args = DPOConfig(output_dir=str(tmp_path), report_to=[], beta=0.1, per_device_train_batch_size=4, use_cpu=True,
                     bf16=False)  # fmt: skip
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(records),
                         processing_class=tok)  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch).item()
    ids, mask, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    pol, ref = _logps(policy, ids, mask, completion), _logps(reference, ids, mask, completion)
    ours = dpo_loss(pol[:4], pol[4:], ref[:4], ref[4:], beta=0.1).item()
    assert abs(theirs - 0.6931) > 1e-3  # the models differ: not the trivial log 2
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_kto_loss_equals_trl(models, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    tok, policy, reference = models
    records = [{"prompt": _prompt(i), "completion": _reply(KTO_REPLIES[i]), "label": i % 3 != 0} for i in range(6)]
    args = KTOConfig(output_dir=str(tmp_path), report_to=[], beta=0.3, per_device_train_batch_size=6, use_cpu=True,
                     bf16=False, desirable_weight=1.0, undesirable_weight=1.5)  # fmt: skip
    trainer = KTOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(records),
                         processing_class=tok)  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch).item()
    logps = {}
    for who, model in (("pol", policy), ("ref", reference)):
        logps[who] = _logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        logps[who + "_kl"] = _logps(
            model, batch["KL_input_ids"], batch["KL_attention_mask"], batch["KL_completion_mask"]
        )
    desirable = torch.as_tensor(batch["label"], dtype=torch.bool)
    ours = kto_loss(logps["pol"], logps["ref"], desirable, logps["pol_kl"], logps["ref_kl"], 0.3, 1.0, 1.5).item()
    assert ours == pytest.approx(theirs, abs=1e-5)
    # The batch can tell a wrong KL term: its raw estimate is positive, so the clamp keeps it, and dropping it or taking
    # it from the matched pairs (each prompt with its own completion) moves the loss far beyond the tolerance.
    assert (logps["pol_kl"] - logps["ref_kl"]).mean().item() > 0.1
    no_kl = kto_loss(logps["pol"], logps["ref"], desirable, logps["ref_kl"], logps["ref_kl"], 0.3, 1.0, 1.5).item()
    matched = kto_loss(logps["pol"], logps["ref"], desirable, logps["pol"], logps["ref"], 0.3, 1.0, 1.5).item()
    assert abs(no_kl - theirs) > 1e-3 and abs(matched - theirs) > 1e-4
