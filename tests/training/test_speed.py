"""The fast training step computes what the plain one does: compiled decoder layers, eager attention, fused AdamW."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from nat_ray.config import TrainConfig
from nat_ray.errors import InputError
from nat_ray.training.loss import AssistantLoss
from nat_ray.training.memory import ModelShape, estimate_peak_bytes
from nat_ray.training.speed import adamw_kwargs, check_compiler, compile_layers, decoder_layers
from tests.training.test_loss import _batch, _tiny


def _loss_and_grads(model: torch.nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    loss = AssistantLoss(model, chunk_tokens=7)(**_batch())
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_same(a: tuple, b: tuple, atol: float = 1e-5) -> None:
    assert a[0] == pytest.approx(b[0], abs=atol)
    for name, grad in a[1].items():
        assert torch.allclose(grad, b[1][name], atol=atol), name


def test_compiled_layers_give_the_same_loss_and_gradients() -> None:
    plain = _loss_and_grads(_tiny())
    model = _tiny()
    assert compile_layers(model) == 2
    compiled = _loss_and_grads(model)
    _assert_same(compiled, plain)
    assert model.model.layers[0]._compiled_call_impl is not None  # the layers really are compiled
    # a second sequence length reuses the dynamic graph and still matches
    batch = {k: v[:, :33] for k, v in _batch().items()}
    plain_model, compiled_model = _tiny(), _tiny()
    compile_layers(compiled_model)
    a = AssistantLoss(plain_model, 7)(**batch)
    b = AssistantLoss(compiled_model, 7)(**batch)
    assert b.item() == pytest.approx(a.item(), abs=1e-5)
    assert list(compiled_model.state_dict()) == list(plain_model.state_dict())  # saved checkpoints keep their keys


def test_eager_attention_matches_sdpa_on_a_padded_batch() -> None:
    sdpa = _tiny()
    sdpa.config._attn_implementation = "sdpa"
    eager = _tiny()
    eager.set_attn_implementation("eager")
    assert eager.config._attn_implementation == "eager"
    _assert_same(_loss_and_grads(eager), _loss_and_grads(sdpa))


def test_fused_adamw_takes_the_same_step() -> None:
    ref, fused = _tiny(), _tiny()
    for m in (ref, fused):
        AssistantLoss(m, 7)(**_batch()).backward()
    opts = [
        torch.optim.AdamW(ref.parameters(), lr=1e-2, foreach=False),
        torch.optim.AdamW(fused.parameters(), lr=1e-2, **adamw_kwargs(cuda=False)),
    ]
    for opt in opts:
        opt.step()
    assert opts[1].defaults["fused"] is True
    for (name, a), (_, b) in zip(ref.named_parameters(), fused.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_compile_needs_ddp_and_a_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    with pytest.raises(ValidationError, match="compile: true needs strategy ddp"):
        TrainConfig(model="m", compile=True, strategy="deepspeed")
    TrainConfig(model="m", compile=True, strategy="ddp")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++, no c++
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(InputError, match=r"train\.compile: true needs a C\+\+ compiler"):
        check_compiler()


def test_a_model_without_decoder_layers_is_named() -> None:
    class Odd(torch.nn.Module):
        base_model_prefix = "body"

    with pytest.raises(InputError, match="Odd has no list of decoder layers"):
        decoder_layers(Odd())


def test_eager_attention_is_in_the_memory_estimate() -> None:
    shape = ModelShape(params=135_000_000, hidden=576, intermediate=1536, layers=30, vocab=49152, heads=9)
    args = (shape, "ddp", 1, 4, 1024, False, 256)
    extra = estimate_peak_bytes(*args, eager_attention=True) - estimate_peak_bytes(*args)
    assert extra == 4 * 9 * 1024**2 * 6 * 30  # every layer's attention weights, kept for the backward pass
    ckpt = (shape, "ddp", 1, 4, 1024, True, 256)
    assert estimate_peak_bytes(*ckpt, eager_attention=True) - estimate_peak_bytes(*ckpt) == extra // 30
