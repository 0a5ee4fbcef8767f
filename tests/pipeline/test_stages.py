"""The skip / redo / resume rule of pipeline stages, on plain folders."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from nat_ray.pipeline.stages import portable, run_stage
from nat_ray.records import STAGE_FILE, config_hash, read_stage


def _body(folder: Path, calls: list):
    def body() -> dict:
        calls.append(folder.name)
        (folder / "out.txt").write_text("x")
        return {"n": 1}

    return body


def test_unchanged_is_skipped_changed_is_redone(tmp_path: Path) -> None:
    calls: list = []
    folder = tmp_path / "sets" / "nat"
    m = run_stage(folder, "build", "nat", {"pos": 8}, {"collect": "abc"}, _body(folder, calls), say=lambda _m: None)
    assert m.complete and m.counts == {"n": 1} and m.outputs == ["out.txt"] and m.seconds is not None
    assert read_stage(folder) == m
    run_stage(folder, "build", "nat", {"pos": 8}, {"collect": "abc"}, _body(folder, calls), say=lambda _m: None)
    assert calls == ["nat"]  # skipped
    (folder / "stale.txt").write_text("from the old config")
    said: list = []
    run_stage(folder, "build", "nat", {"pos": 8}, {"collect": "CHANGED"}, _body(folder, calls), say=said.append)
    assert calls == ["nat", "nat"] and not (folder / "stale.txt").exists()  # upstream changed: redone from empty
    assert any("made with another config, redone" in s for s in said)


def test_an_incomplete_stage_of_the_same_config_is_resumed_not_wiped(tmp_path: Path) -> None:
    folder = tmp_path / "eval" / "nat"

    def crash() -> dict:
        (folder / "part-00000.parquet").write_text("half")
        raise RuntimeError("killed")

    with contextlib.suppress(RuntimeError):
        run_stage(folder, "eval", "nat", {"a": 1}, {}, crash, say=lambda _m: None)
    assert read_stage(folder) is not None and not read_stage(folder).complete
    seen = []

    def resume() -> dict:
        seen.append((folder / "part-00000.parquet").exists())
        return {}

    said: list = []
    run_stage(folder, "eval", "nat", {"a": 1}, {}, resume, say=said.append)
    assert seen == [True] and any("resuming" in s for s in said)
    assert (folder / STAGE_FILE).exists() and read_stage(folder).complete


def test_hash_covers_view_and_upstream() -> None:
    assert config_hash({"a": 1}, {"x": "1"}) == config_hash({"a": 1}, {"x": "1"})
    assert config_hash({"a": 1}, {"x": "1"}) != config_hash({"a": 2}, {"x": "1"})
    assert config_hash({"a": 1}, {"x": "1"}) != config_hash({"a": 1}, {"x": "2"})


def test_paths_inside_the_run_folder_are_hashed_relative_to_it(tmp_path: Path) -> None:
    def view(run: Path) -> dict:  # an eval's view: the model it serves lies in the run; the index outside it
        return {
            "policy": {"model": str(run / "models/nat")},
            "index": str(tmp_path / "index"),
            "other": str(tmp_path / "a2"),
        }

    assert portable(view(tmp_path / "a"), tmp_path / "a") == {
        "policy": {"model": "$RUN/models/nat"},
        "index": str(tmp_path / "index"),
        "other": str(tmp_path / "a2"),  # a sibling that only starts like the run folder is not in it
    }
    calls: list = []
    a, b = tmp_path / "a", tmp_path / "b"
    run_stage(a / "eval/nat", "eval", "nat", view(a), {}, _body(a / "eval/nat", calls), say=lambda _m: None, root=a)
    shutil.copytree(a, b)  # the run folder copied elsewhere: the same stage
    m = run_stage(b / "eval/nat", "eval", "nat", view(b), {}, _body(b / "eval/nat", calls), say=lambda _m: None, root=b)
    assert calls == ["nat"] and m == read_stage(a / "eval/nat")


def test_a_stage_recorded_with_absolute_paths_is_recognised_and_its_hash_rewritten(tmp_path: Path) -> None:
    calls: list = []
    run, folder = tmp_path / "run", tmp_path / "run/eval/nat"
    view = {"model": str(run / "models/nat")}
    old = run_stage(folder, "eval", "nat", view, {"train": "t"}, _body(folder, calls), say=lambda _m: None)  # no root
    assert old.config_hash == config_hash(view, {"train": "t"})
    said: list = []
    m = run_stage(folder, "eval", "nat", view, {"train": "t"}, _body(folder, calls), say=said.append, root=run)
    assert calls == ["nat"] and said == ["pipeline: eval nat: up to date, skipped"]
    assert m.config_hash == config_hash({"model": "$RUN/models/nat"}, {"train": "t"}) != old.config_hash
    assert read_stage(folder) == m and m.started_at == old.started_at and m.counts == old.counts


def test_a_stage_whose_input_files_moved_with_the_same_contents_keeps_its_hash(tmp_path: Path) -> None:
    """The data folder elsewhere (another machine, another home): the same config and file contents are the same
    stage, and it keeps the hash the stages after it were made with; another content is another stage."""
    calls: list = []
    folder = tmp_path / "run/trajectories"
    view = {"kind": "gold", "questions": "gsm8k/train.jsonl"}
    old = run_stage(folder, "collect", None, view, {"/a/data/gsm8k/train.jsonl": "h1"}, _body(folder, calls), say=print)
    said: list = []
    moved = {"/b/data/gsm8k/train.jsonl": "h1"}
    m = run_stage(folder, "collect", None, view, moved, _body(folder, calls), say=said.append)
    assert calls == ["trajectories"] and m == old and read_stage(folder) == old
    assert said == ["pipeline: collect: up to date, skipped (its input files moved, their contents the same)"]
    run_stage(folder, "collect", None, {**view, "limit": 5}, moved, _body(folder, calls), say=lambda _m: None)
    assert calls == ["trajectories"] * 2  # another config: redone
    edited = {"/b/data/gsm8k/train.jsonl": "h2"}
    run_stage(folder, "collect", None, {**view, "limit": 5}, edited, _body(folder, calls), say=lambda _m: None)
    assert calls == ["trajectories"] * 3  # another content: redone
