"""The run folder's records: what each stage output says about how it was made (``_stage.json``).

A stage output holds a :class:`~nat_ray.types.StageManifest`: the stage, the hash of the config view that made it
(its section plus its inputs' hashes), inputs, counts, timings, package versions, and ``complete``. The pipeline's
skip / redo / resume rule (``nat_ray.pipeline.stages``) and the report both read it from here; this module is core
(no Ray, no pipeline), so anything may import it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nat_ray.types import StageManifest

STAGE_FILE = "_stage.json"


def config_hash(view: object, upstream: dict[str, str] | None = None) -> str:
    blob = json.dumps({"view": view, "upstream": upstream or {}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_stage(folder: Path) -> StageManifest | None:
    try:
        return StageManifest.model_validate_json((folder / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return None


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("nat-ray", "ray", "torch", "transformers", "deepspeed"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out
