"""The run folder's mirror on a pyarrow.fs URI (here file://, the same pyarrow.fs code path as s3:// or gs://)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.pipeline.mirror import StageMirror
from nat_ray.pipeline.stages import run_stage
from nat_ray.records import read_stage


def _stage(out: Path, rel: str, mirror: StageMirror, files: dict[str, str], view: object = "v1") -> None:
    folder = out / rel

    def body() -> dict:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        return {"files": len(files)}

    run_stage(folder, "build", rel, view, {}, body, say=lambda _m: None, mirror=mirror)


def test_completed_stages_are_uploaded_and_a_new_out_downloads_them(tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'bucket' / 'run'}"
    first = StageMirror(tmp_path / "a", uri)
    _stage(tmp_path / "a", "sets/nat", first, {"train.jsonl": "x\n", "deep/part.parquet": "p"})
    _stage(tmp_path / "a", "report", first, {"README.md": "# r"})
    assert first.stages() == ["report", "sets/nat"]
    assert (tmp_path / "bucket/run/sets/nat/deep/part.parquet").read_text() == "p"

    # another machine, an empty out: the stages come back whole, manifests included, and are then up to date
    second = StageMirror(tmp_path / "b", uri)
    assert second.pull() == ["report", "sets/nat"]
    assert (tmp_path / "b/sets/nat/train.jsonl").read_text() == "x\n"
    stage = read_stage(tmp_path / "b/sets/nat")
    assert stage is not None and stage.complete and stage.counts == {"files": 2}
    assert second.pull() == []  # complete locally: nothing downloaded again


def test_a_redone_stage_replaces_the_mirrored_one_and_a_manifestless_folder_is_ignored(tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'bucket'}"
    mirror = StageMirror(tmp_path / "a", uri)
    _stage(tmp_path / "a", "eval/nat", mirror, {"old.json": "{}", "metrics.json": "1"})
    _stage(tmp_path / "a", "eval/nat", mirror, {"metrics.json": "2"}, view="v2")  # another config: redone
    assert sorted(p.name for p in (tmp_path / "bucket/eval/nat").iterdir()) == ["_stage.json", "metrics.json"]
    assert (tmp_path / "bucket/eval/nat/metrics.json").read_text() == "2"
    # an upload cut short (no manifest yet) is not a stage
    (tmp_path / "bucket/eval/base").mkdir(parents=True)
    (tmp_path / "bucket/eval/base/metrics.json").write_text("partial")
    assert mirror.stages() == ["eval/nat"]
    # a local stage that is incomplete is replaced by the mirrored one
    local = tmp_path / "b/eval/nat"
    local.mkdir(parents=True)
    (local / "_stage.json").write_text(json.dumps({"complete": False}))
    assert StageMirror(tmp_path / "b", uri).pull() == ["eval/nat"]
    assert (local / "metrics.json").read_text() == "2"


def test_a_skipped_stage_the_mirror_lacks_is_uploaded(tmp_path: Path) -> None:
    _stage(tmp_path / "a", "report", None, {"README.md": "# r"})  # type: ignore[arg-type]
    mirror = StageMirror(tmp_path / "a", f"file://{tmp_path / 'bucket'}")
    _stage(tmp_path / "a", "report", mirror, {"README.md": "# r"})  # up to date: skipped, and uploaded
    assert mirror.stages() == ["report"]


def test_a_bad_storage_uri_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="storage: 'nosuch://x'"):
        StageMirror(tmp_path, "nosuch://x")
