"""Float32 linears on oneDNN with weights reordered once (``nat_ray.policy.packed_linear``): the same function as
``nn.Linear`` to float32 rounding, a row's result independent of how many rows share the call (bit for bit where that
was measured: AVX2), and only float32 CPU models changed."""

from __future__ import annotations

import torch

from nat_ray.policy.packed_linear import PackedLinear, pack_linears

# bit-for-bit row invariance was measured on AVX2 CPUs (docs/benchmarks.md, evaluation); elsewhere the values only
MEASURED_BITWISE = torch.backends.cpu.get_cpu_capability() == "AVX2"


def test_a_packed_linear_computes_what_the_linear_does_and_each_row_alone_as_in_a_batch() -> None:
    torch.manual_seed(0)
    for bias in (True, False):
        linear = torch.nn.Linear(576, 1536, bias=bias)
        packed = PackedLinear(linear)
        x = torch.randn(2, 33, 576)  # (batch, tokens, features), as a decoder layer calls it
        with torch.inference_mode():
            torch.testing.assert_close(packed(x), linear(x), rtol=1e-4, atol=1e-4)
            rows = packed(x[0])
            for m in (1, 3, 8, 17):  # a decode step's rows: the same bits whatever shares the call
                alone = packed(x[0, :m].contiguous())
                if MEASURED_BITWISE:
                    assert torch.equal(alone, rows[:m]), m
                else:  # oneDNN picks other kernels on other ISAs: not measured there, so only the values are held
                    torch.testing.assert_close(alone, rows[:m], rtol=1e-5, atol=1e-5)


def test_only_float32_cpu_linears_are_packed_and_the_model_generates_as_before() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 320, (3, 12))
    with torch.inference_mode():
        before = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert pack_linears(model) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the LM head
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied: the embedding is not copied
    with torch.inference_mode():
        after = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert torch.equal(before, after)
    assert pack_linears(LlamaForCausalLM(config).to(torch.bfloat16)) == 0
