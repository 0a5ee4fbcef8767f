"""The frozen reference's log-probabilities for DPO / KTO, computed once per set and model, before training.

The reference is the model being fine-tuned, before training (``train.model``). Each row's two sequences are scored
by it once, on the driver, in the precision the workers will train in (bf16 autocast where they use it: a float32
reference against a bf16 policy would start every log-ratio off zero), and stored beside the set
(``<set>.ref_logps.json`` for a ``.jsonl`` set, ``<set>/_ref_logps.json`` for a folder) with the reference model's
hash and the hash of the encoded rows. A later run on the same model and rows reads them; a different model, set,
tokenizer or ``max_length`` gives other hashes, and they are computed again rather than trained against stale ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nat_ray.records import file_hash
from nat_ray.storage import read_json_file, write_json

VERSION = 1


def store_path(data: str | Path) -> Path:
    data = Path(data)
    return data.with_name(data.name + ".ref_logps.json") if data.suffix == ".jsonl" else data / "_ref_logps.json"


def model_hash(model_path: str | Path) -> str:
    """The weights' content hash (every safetensors / bin file, by name and content)."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(model_path).iterdir() if p.suffix in (".safetensors", ".bin"))
    for p in files:
        h.update(p.name.encode() + file_hash(p, 64).encode())
    return h.hexdigest()[:16]


def rows_hash(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["input_ids"], r["labels"]], separators=(",", ":")).encode())
    return h.hexdigest()[:16]


def attach_reference(
    rows: list[dict], model_path: str | Path, data: str | Path, precision: str, batch_size: int = 4
) -> tuple[list[dict], dict]:
    """``rows`` with ``ref_logps`` (one per sequence), and what was done: ``{"computed": bool, "forwards": n,
    "path": store}``. Stored values are used when their model, rows and precision hashes match."""
    path = store_path(data)
    key = {"version": VERSION, "model": model_hash(model_path), "rows": rows_hash(rows), "precision": precision}
    stored = read_json_file(path) if path.exists() else None
    if stored is not None and stored.get("key") == key and len(stored.get("logps", [])) == len(rows):
        logps, forwards, computed = stored["logps"], 0, False
    else:
        logps, forwards = _score(rows, model_path, precision, batch_size)
        write_json(path, {"key": key, "logps": logps})
        computed = True
    out = [r | {"ref_logps": lp} for r, lp in zip(rows, logps, strict=True)]
    return out, {"computed": computed, "forwards": forwards, "path": str(path)}


def _score(rows: list[dict], model_path: str | Path, precision: str, batch_size: int) -> tuple[list[list[float]], int]:
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nat_ray.training.preference import PreferenceLoss, collate_preference

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lm = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    module = PreferenceLoss(lm, "dpo", beta=0.1)
    forwards = 0

    def count(*_args: object) -> None:
        nonlocal forwards
        forwards += 1

    hook = module._decoder().register_forward_hook(count)
    bf16 = precision == "bfloat16"
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    logps: list[list[float]] = []
    try:
        with torch.no_grad(), autocast:
            for s in range(0, len(rows), batch_size):
                chunk = [r | {"ref_logps": [0.0, 0.0]} for r in rows[s : s + batch_size]]
                batch = collate_preference(chunk, pad_id)
                values = module.sequence_logps(batch["input_ids"], batch["attention_mask"], batch["labels"]).tolist()
                b = len(chunk)
                logps += [[values[i], values[b + i]] for i in range(b)]
    finally:
        hook.remove()
    return logps, forwards
