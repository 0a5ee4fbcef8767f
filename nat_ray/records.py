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


def file_hash(path: str | Path, chars: int = 16) -> str:
    """The file's sha256, hex, its first ``chars`` characters (16 in stage records; 64 where checksums are pinned)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:chars]


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


# ---------------------------------------------------------------- the run folder's layout (names nowhere else)

MANIFEST = "_manifest.json"  # a dataset folder's manifest
JSONL_MANIFEST_SUFFIX = ".manifest.json"  # beside a .jsonl file: <file>.manifest.json
TRAIN_RECORD = "nat_ray_train.json"  # in a checkpoint folder: how it was trained (steps, losses, precision, timing)
TRAIN_LOG = "metrics.jsonl"  # in a checkpoint folder: one line per logged optimizer step
METRICS = "metrics.json"  # in an eval folder
RUN_RECORD = "run.json"  # in the report folder: every stage's record
TABLE = "table.md"
REPORT_README = "README.md"
LOSS_PLOT = "loss.png"
ACCURACY_PLOT = "accuracy_vs_negatives.png"
PERPLEXITY_PLOT = "perplexity_vs_negatives.png"


class RunLayout:
    """Where each output of a pipeline run lives, under its ``out`` folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    @property
    def trajectories(self) -> Path:
        return self.out / "trajectories"

    @property
    def regenerated(self) -> Path:
        """The trajectories a fine-tuned model rolled out (``study.negative_source: regenerated``)."""
        return self.out / "regenerated"

    @property
    def sets(self) -> Path:
        return self.out / "sets"

    def set_dir(self, variant: str) -> Path:
        return self.sets / variant

    def set_file(self, variant: str) -> Path:
        return self.set_dir(variant) / "train.jsonl"

    def set_manifest(self, variant: str) -> Path:
        return jsonl_manifest(self.set_file(variant))

    @property
    def models(self) -> Path:
        return self.out / "models"

    def model(self, variant: str) -> Path:
        return self.models / variant

    @property
    def evals(self) -> Path:
        return self.out / "eval"

    def eval_dir(self, name: str) -> Path:
        return self.evals / name

    @property
    def report(self) -> Path:
        return self.out / "report"


def jsonl_manifest(path: Path) -> Path:
    """The manifest beside a ``.jsonl`` file."""
    return path.with_name(path.name + JSONL_MANIFEST_SUFFIX)
