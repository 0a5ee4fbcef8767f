"""Fine-tuning with Ray Train + DeepSpeed ZeRO-3 on CPU (2 workers, gloo) on a real local Ray cluster."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.errors import InputError
from nat_ray.hardware import resolve_bf16
from nat_ray.storage import write_jsonl
from nat_ray.training.trainer import run_train
from tests.conftest import own_processes, run_killing

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, smollm2: Path) -> Path:
    return tiny_llama_folder(tmp_path_factory.mktemp("tiny") / "tiny-llama", smollm2)


def tiny_llama_folder(out: Path, smollm2: Path) -> Path:
    """A random-initialised 2-layer Llama with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _toy_set(path: Path, n: int = 64) -> Path:
    """Learnable: the answer is always the question's number plus nothing but a fixed pattern."""
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": str(i),
                "label": "positive",
                "messages": [
                    {"role": "user", "content": f"Question: what is {i % 7}?", "loss": False},
                    {"role": "assistant", "content": f"Thought: it is {i % 7}.\nAction: finish[{i % 7}]", "loss": True},
                    {"role": "user", "content": "Observation: Episode finished", "loss": False},
                ],
            }
        )
    write_jsonl(path, rows)
    return path


def _cfg(tmp_path: Path, model: Path, data: Path, *overrides: str):
    base = [
        f"out={tmp_path}",
        f"train.model={model}",
        f"train.data={data}",
        "train.max_length=128",
        "train.global_batch_size=8",
        "train.micro_batch_size=2",
        "train.num_workers=2",
        "train.cpus_per_worker=1",
        "train.checkpoint_every=0",
        "train.compile=false",  # (the shipped config compiles; test_the_fast_step_trains_as_the_plain_one turns it on)
    ]
    return load_config(REPO / "configs/train_smollm2_strategyqa_nat.yaml", [*base, *overrides])


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("strategy", ["deepspeed", "ddp"])
def test_two_workers_learn_a_toy_set(tmp_path: Path, tiny_llama: Path, ray_local, strategy: str) -> None:
    data = _toy_set(tmp_path / "toy.jsonl")
    summary = run_train(
        _cfg(
            tmp_path,
            tiny_llama,
            data,
            f"train.strategy={strategy}",
            "train.epochs=6",
            "train.lr=3e-3",
            "train.warmup_ratio=0.1",
        )
    )
    out = Path(summary["out"])
    steps = [m for m in _metrics(out) if "loss" in m and m.get("loss") == m.get("loss")]
    assert summary["step"] == summary["total_steps"] == 48  # 64 examples / 8 per step x 6 epochs
    assert steps[-1]["loss"] < 0.5 * steps[0]["loss"], (steps[0]["loss"], steps[-1]["loss"])
    assert all(0 < m["padding_efficiency"] <= 1 and m["tokens_per_s"] > 0 for m in steps)
    lrs = [m["lr"] for m in steps]
    assert max(lrs) <= 3e-3 and lrs[-1] < max(lrs)  # warm-up then cosine decay

    # the checkpoint is a Hugging Face folder that loads and generates
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Question: what is 3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    generated = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    text = tok.decode(generated[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.startswith("Thought: it is"), text
    saved = json.loads((out / "nat_ray_train.json").read_text())
    assert saved["config"]["train"]["lr"] == 3e-3 and saved["data"]["examples"] == 64
    assert saved["config"]["train"]["strategy"] == strategy
    # train.bf16: auto trains in bf16 on a CPU that has it (this machine: AVX512-BF16), else in float32
    assert saved["precision"] == summary["precision"] == resolve_bf16("auto", "train.bf16", cuda=False).name
    assert saved["final_loss"] == pytest.approx(steps[-1]["loss"]) and saved["wall_seconds"] > 0
    assert saved["tokens_seen"] == sum(m["tokens"] for m in steps) and saved["peak_rss_gb_per_worker"] > 0.3
    assert not (tmp_path / "ray_train").exists()  # resumable checkpoints are gone with the completed run


def _registered_steps(storage: Path) -> list[int]:
    """Steps the Ray Train controller has taken in (its metrics log, written after each report)."""
    logs = list(storage.glob("*.metrics.jsonl"))
    return [json.loads(x)["step"] for log in logs for x in log.read_text().splitlines()]


def test_ddp_resumes_after_a_killed_worker_with_the_same_final_step(
    tmp_path: Path, tiny_llama: Path, ray_local
) -> None:
    data = _toy_set(tmp_path / "toy.jsonl", 96)
    cfg = _cfg(
        tmp_path,
        tiny_llama,
        data,
        "train.epochs=2",
        "train.checkpoint_every=3",
        "train.max_failures=2",
        "train.log_every=1",
        "train.strategy=ddp",
    )
    storage = tmp_path / "ray_train"
    killed: list[int] = []

    def registered_steps() -> list[int]:
        return _registered_steps(storage)

    def kill_after_checkpoint() -> bool:
        if max(registered_steps(), default=0) >= 4:  # the step-3 checkpoint is registered
            for pid in own_processes("RayTrainWorker"):  # this test's cluster only
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return True
        return False  # not yet, or no worker process seen yet: look again

    summary = run_killing(lambda: run_train(cfg), kill_after_checkpoint)
    assert killed, "no training worker was killed"
    steps = [json.loads(x)["step"] for x in (Path(summary["out"]) / "metrics.jsonl").read_text().splitlines()]
    assert summary["step"] == summary["total_steps"] == 24  # 96 / 8 x 2, as without the failure
    final = json.loads((Path(summary["out"]) / "nat_ray_train.json").read_text())
    resumed = final["resumed_from_step"]
    assert 3 <= resumed < 24 and resumed % 3 == 0, resumed  # restarted from a checkpoint, before the end
    # The log holds steps 1..k from before the kill, then resumed+1..24: a kill that lands inside the step after a
    # checkpoint (k == resumed) repeats none, one later repeats the steps since that checkpoint; none is lost.
    k = len(steps) - (24 - resumed)
    assert k >= resumed and steps == list(range(1, k + 1)) + list(range(resumed + 1, 25)), (resumed, steps)


def test_a_rerun_resumes_a_stopped_run_from_its_checkpoint(tmp_path: Path, tiny_llama: Path, ray_local) -> None:
    """A training that stopped before its end (here a worker killed with no retries left; a killed driver or an ended
    session leaves the same storage) is resumed by the next run with the same inputs, not started over."""
    data = _toy_set(tmp_path / "toy.jsonl", 96)
    common = ("train.epochs=2", "train.checkpoint_every=3", "train.log_every=1", "train.strategy=ddp")
    cfg = _cfg(tmp_path, tiny_llama, data, *common, "train.max_failures=0")
    storage = tmp_path / "ray_train"

    def kill_after_checkpoint() -> bool:
        if max(_registered_steps(storage), default=0) >= 7:  # the step-6 checkpoint is registered
            for pid in own_processes("RayTrainWorker"):
                os.kill(pid, signal.SIGKILL)
            return True
        return False

    with pytest.raises(Exception):  # noqa: B017 (Ray's worker-group error, whichever class this Ray version raises)
        run_killing(lambda: run_train(cfg, progress=False), kill_after_checkpoint)
    assert not (tmp_path / "checkpoint").exists() and len(list(storage.glob("train-*/checkpoint_*"))) >= 1

    # a rerun differing only in how it is watched resumes
    summary = run_train(_cfg(tmp_path, tiny_llama, data, *common, "train.log_every=2"), progress=False)
    final = json.loads((Path(summary["out"]) / "nat_ray_train.json").read_text())
    assert summary["step"] == summary["total_steps"] == 24
    assert 6 <= final["resumed_from_step"] < 24 and final["resumed_from_step"] % 3 == 0, final["resumed_from_step"]
    assert not storage.exists()


def test_smollm2_few_steps_on_real_strategyqa_nat_examples(
    tmp_path: Path, smollm2: Path, strategyqa_files, ray_local
) -> None:
    from tests.conftest import strategyqa_nat_set

    strategyqa_nat_set(strategyqa_files, tmp_path, tmp_path / "nat.jsonl", pos=8, neg=8)
    strategyqa_nat_set(strategyqa_files, tmp_path, tmp_path / "dev.jsonl", pos=2, neg=0, seed=1)
    cfg = _cfg(
        tmp_path,
        smollm2,
        tmp_path / "nat.jsonl",
        "train.max_length=512",
        "train.global_batch_size=2",  # one micro-batch per worker per step
        "train.micro_batch_size=1",
        "train.max_steps=2",
        "train.strategy=deepspeed",  # ZeRO-3 on the real model, dev perplexity through the sharded weights
        f"train.dev={tmp_path / 'dev.jsonl'}",
    )
    summary = run_train(cfg)
    assert summary["step"] == 2
    assert 1.0 < summary["dev_perplexity"] < 1000
    losses = [m["loss"] for m in _metrics(Path(summary["out"])) if m.get("loss") == m.get("loss") and "loss" in m]
    assert losses and all(0 < x < 20 for x in losses)


def test_the_fast_step_trains_as_the_plain_one(tmp_path: Path, tiny_llama: Path, ray_local) -> None:
    """train.compile + eager attention + fused AdamW (the math configs' settings) through Ray Train: the same losses
    step by step as the plain loop, and a checkpoint that loads without them."""
    data = _toy_set(tmp_path / "toy.jsonl", 32)
    common = ("train.strategy=ddp", "train.bf16=off", "train.max_steps=4", "train.log_every=1", "train.lr=3e-3")
    plain = run_train(_cfg(tmp_path / "plain", tiny_llama, data, *common), progress=False)
    fast = run_train(
        _cfg(tmp_path / "fast", tiny_llama, data, *common, "train.compile=true", "train.attn_implementation=eager"),
        progress=False,
    )
    a = [m["loss"] for m in _metrics(Path(plain["out"]))]
    b = [m["loss"] for m in _metrics(Path(fast["out"]))]
    assert len(a) == len(b) == 4
    assert b == pytest.approx(a, rel=1e-3)
    assert a[-1] != a[0]  # the steps did change the weights
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(fast["out"])
    assert model.config._attn_implementation != "eager"  # inference picks its own kernel


def test_bad_input_fails_before_training(tmp_path: Path, tiny_llama: Path) -> None:
    data = _toy_set(tmp_path / "toy.jsonl", 8)
    with pytest.raises(InputError, match="less than one optimizer step"):
        run_train(_cfg(tmp_path, tiny_llama, data, "train.global_batch_size=16"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        run_train(_cfg(tmp_path, tiny_llama, empty))
    no_loss = tmp_path / "noloss.jsonl"
    write_jsonl(
        no_loss, [{"id": "1", "label": "positive", "messages": [{"role": "user", "content": "hi", "loss": False}]}]
    )
    with pytest.raises(InputError, match="no loss tokens"):
        run_train(_cfg(tmp_path, tiny_llama, no_loss, "train.drop_no_loss=false"))
    with pytest.raises(InputError, match="no example has a loss token"):
        run_train(_cfg(tmp_path, tiny_llama, no_loss, "train.drop_no_loss=true"))
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(InputError, match="not a causal LM"):
        run_train(_cfg(tmp_path, encoder, data))
    with pytest.raises(InputError, match="does not exist"):
        run_train(_cfg(tmp_path, tmp_path / "missing", data))
    assert not (tmp_path / "checkpoint").exists()
