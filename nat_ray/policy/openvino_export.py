"""A causal LM folder -> an OpenVINO IR folder that OpenVINO GenAI's continuous batching runs, made inside the
project's own environment (its transformers, its torch), so every checkpoint the project writes can be served by the
``openvino`` engine without a second environment (optimum-intel pins an older transformers).

    nat-ray models export-openvino MODEL [--out DIR]

What the export holds, and why each step is there:
- the model traced by ``openvino.convert_model`` with its past keys/values as inputs and outputs (transformers' SDPA
  attention: OpenVINO turns each ``ScaledDotProductAttention`` into a paged attention when the pipeline loads);
- a ``beam_idx`` input gathered onto each past (the row reorder ``generate`` does between steps), then the past made
  model state (``make_stateful``) with an initial value of zeros sized by ``input_ids``' batch: GenAI's SDPA ->
  PagedAttention rewrite matches only a state read that has an initial value, and without the match the graph keeps
  reading ``beam_idx`` and ``attention_mask`` after the rewrite removed them (the pipeline refuses it);
- float32 weights (``policy.dtype: auto`` still lets OpenVINO compute in bf16 where the CPU has it);
- the transformers tokenizer files (the engine tokenizes with the chat template, as every engine does) and its
  OpenVINO twin (``openvino_tokenizers``), which GenAI loads with the model.

``openvino_model_dir`` is what the engine calls: an IR folder as it is, a model folder (or prepared name) exported
once into ``$NAT_RAY_OPENVINO_DIR`` (default ``~/.cache/nat_ray/openvino``), keyed by the folder's files (a retrained
checkpoint written over the same path is exported again, and its earlier export removed), under a file lock (replicas
starting together on a node).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from nat_ray.errors import InputError
from nat_ray.storage import atomic_dir

IR_FILE = "openvino_model.xml"
EXPORT_RECORD = "nat_ray_openvino.json"
EXPORT_FORMAT = 2  # bump when the export changes: cached exports of an older format are made again
_SOURCE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def exports_dir() -> Path:
    return Path(os.environ.get("NAT_RAY_OPENVINO_DIR", Path.home() / ".cache/nat_ray/openvino"))


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("openvino", "openvino-tokenizers", "transformers", "torch")}


def export_key(src: Path) -> str:
    """Names one export of ``src`` as it is now: its path, its files' sizes and times, the export format and the
    versions that made it."""
    files = sorted(p for p in src.iterdir() if p.suffix == ".safetensors" or p.name in _SOURCE_FILES)
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    blob = json.dumps([str(src.resolve()), stats, EXPORT_FORMAT, _versions()])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def kv_shape(cfg: dict[str, Any]) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of a decoder's ``config.json``: the past the export takes as state, and
    what the engine's KV cache holds per token."""
    heads = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg["num_hidden_layers"], heads, head_dim


def _traced(model: Any) -> Any:
    """The model as ``convert_model`` traces it: (input_ids, attention_mask, position_ids, *past) -> (logits,
    *present), past and present flattened layer by layer as key, value."""
    import torch
    from transformers import DynamicCache

    cfg = model.config

    class WithPast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):  # type: ignore[no-untyped-def]
            cache = DynamicCache(config=cfg)
            # set each layer's tensors directly: a cache built lazily concatenates onto an empty 1-D tensor, which
            # the converter cannot shape
            for i, layer in enumerate(cache.layers):
                layer.keys, layer.values = past[2 * i], past[2 * i + 1]
                layer.dtype, layer.device, layer.is_initialized = past[2 * i].dtype, past[2 * i].device, True
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             cache=cache, use_cache=True)  # fmt: skip
            return (out.logits, *(t for layer in out.cache.layers for t in (layer.keys, layer.values)))

    return WithPast()


_ATTENTION = "nat_ray_openvino_export"


def _export_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):  # type: ignore[no-untyped-def]
    """transformers' SDPA attention as the export traces it: the heads repeated for grouped-query attention, one
    ``scaled_dot_product_attention`` (OpenVINO's ``ScaledDotProductAttention``, which GenAI pages), then the heads
    back beside the hidden size. transformers' own function reshapes the output with a ``-1`` heads axis first (to
    undo a decode-time packing this trace never takes), which leaves the o_proj input's width unknown to OpenVINO:
    ~5-10% of a decode step here (benchmarks/decode_step.py)."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv

    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _convert(src: Path) -> Any:
    import openvino as ov
    import torch
    from transformers import AttentionInterface, AutoModelForCausalLM
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(_ATTENTION, _export_attention)
    AttentionMaskInterface.register(_ATTENTION, sdpa_mask)  # the boolean mask SDPA takes
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    model.set_attn_implementation(_ATTENTION)
    layers, heads, head_dim = kv_shape(model.config.to_dict())
    rows, new, old = 2, 3, 4  # example shapes only: every axis but heads and head_dim stays dynamic
    mask = torch.ones(rows, old + new, dtype=torch.long)
    mask[0, 0] = 0  # a padded row, so the trace keeps the mask's use
    example = [torch.ones(rows, new, dtype=torch.long), mask, torch.arange(old, old + new).expand(rows, new)]
    example += [torch.randn(rows, heads, old, head_dim) for _ in range(2 * layers)]
    shapes = [[-1, -1]] * 3 + [[-1, heads, -1, head_dim]] * (2 * layers)
    # the tracer warns of every Python branch on a tensor it freezes; the ones here hold for any input
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ov_model = ov.convert_model(
            _traced(model), example_input=tuple(example), input=[ov.PartialShape(s) for s in shapes]
        )
    past = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    for port, name in zip(ov_model.inputs, ["input_ids", "attention_mask", "position_ids", *past], strict=True):
        port.get_tensor().set_names({name})
    present = [name.replace("past_key_values", "present") for name in past]
    for port, name in zip(ov_model.outputs, ["logits", *present], strict=True):
        port.get_tensor().set_names({name})
    _make_stateful(ov_model, dict(zip(past, present, strict=True)))
    # The KV cache in f16 unless the engine asks otherwise, as optimum-intel writes into its unquantised exports
    # (GenAI reads an IR's runtime_options as defaults): on x86 OpenVINO's own default is a u8-compressed cache, which
    # ran 5-8% slower than f16 on the evaluation benchmark here (docs/benchmarks.md) and moves replies further from
    # the model's own numbers. policy.dtype float32 still sets an f32 cache.
    ov_model.set_rt_info("f16", ["runtime_options", "KV_CACHE_PRECISION"])
    return ov_model


def _make_stateful(ov_model: Any, past_to_present: dict[str, str]) -> None:
    import openvino as ov
    from openvino import opset13
    from openvino._offline_transformations import apply_make_stateful_transformation

    beam = opset13.parameter([-1], ov.Type.i32, name="beam_idx")
    beam.output(0).get_tensor().set_names({"beam_idx"})
    ov_model.add_parameters([beam])
    for port in ov_model.inputs:
        if port.get_any_name() in past_to_present:
            users = port.get_target_inputs()
            kept = opset13.gather(port, beam, opset13.constant(0))
            for user in users:
                user.replace_source_output(kept.output(0))
    ov_model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(ov_model, past_to_present)
    ids = next(p for p in ov_model.get_parameters() if p.get_friendly_name() == "input_ids")
    rows = opset13.gather(opset13.shape_of(ids, "i64"), opset13.constant([0], ov.Type.i64), opset13.constant(0))
    for node in ov_model.get_ordered_ops():
        if node.get_type_name() != "ReadValue":
            continue
        dims = [opset13.constant([max(d, 0)], ov.Type.i64) for d in node.get_attributes()["variable_shape"][1:]]
        zeros = opset13.broadcast(opset13.constant(0.0, ov.Type.f32), opset13.concat([rows, *dims], 0))
        node.set_arguments([zeros.output(0)])
    ov_model.validate_nodes_and_infer_types()


def export_openvino(model: str | Path, out: Path, overwrite: bool = False) -> Path:
    """Export ``model`` (a folder or prepared name) to the IR folder ``out``, atomically; returns ``out``."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer, GenerationConfig

    from nat_ray.models import resolve_model_path
    from nat_ray.storage import write_json

    src = resolve_model_path(str(model))
    if (src / IR_FILE).is_file():
        raise InputError(f"{src}: already an OpenVINO IR folder ({IR_FILE})")
    started = time.monotonic()
    try:
        ov_model = _convert(src)
    except (ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise InputError(f"{src}: cannot export to OpenVINO IR ({type(exc).__name__}: {exc})") from None
    tokenizer = AutoTokenizer.from_pretrained(src)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        ov.save_model(ov_model, tmp / IR_FILE, compress_to_fp16=False)
        ov_tok, ov_detok = convert_tokenizer(tokenizer, with_detokenizer=True)
        ov.save_model(ov_tok, tmp / "openvino_tokenizer.xml")
        ov.save_model(ov_detok, tmp / "openvino_detokenizer.xml")
        tokenizer.save_pretrained(tmp)
        (tmp / "config.json").write_bytes((src / "config.json").read_bytes())
        # no generation_config.json: GenAI falls back to its defaults, and the engine sets what it needs per request
        with contextlib.suppress(OSError):
            GenerationConfig.from_pretrained(src).save_pretrained(tmp)
        record = {"format": EXPORT_FORMAT, "source": str(src.resolve()), "key": export_key(src),
                  "versions": _versions(), "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
        write_json(tmp / EXPORT_RECORD, record)
    return out


def openvino_model_dir(model: str | Path) -> Path:
    """The IR folder the ``openvino`` engine loads for ``model``: an IR folder as it is; a model folder or prepared
    name exported once into ``exports_dir()`` (a later call with the same files finds it)."""
    from filelock import FileLock

    path = Path(model).expanduser()
    if (path / IR_FILE).is_file():
        return path
    from nat_ray.models import resolve_model_path

    src = resolve_model_path(str(model))
    key = export_key(src)
    target = exports_dir() / f"{src.name}-{key}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if not (target / EXPORT_RECORD).is_file():
            export_openvino(src, target, overwrite=True)
            _drop_superseded(target, src)
    return target


def _drop_superseded(target: Path, src: Path) -> None:
    """Remove earlier exports of the same folder (a checkpoint written again there): ~0.5 GB each for SmolLM2, and
    nothing will load them again, since the files they came from are gone."""
    import shutil

    for other in target.parent.glob(f"{src.name}-*"):
        record = other / EXPORT_RECORD
        if other == target or not record.is_file():
            continue
        try:
            source = json.loads(record.read_text()).get("source")
        except (OSError, ValueError):
            continue
        if source == str(src.resolve()):
            shutil.rmtree(other, ignore_errors=True)
