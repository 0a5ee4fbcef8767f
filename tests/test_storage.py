from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.storage import (
    atomic_dir,
    atomic_file,
    dataset_manifest,
    manifest,
    read_records,
    read_trajectories,
    read_trajectories_jsonl,
    read_trajectories_ray,
    write_trajectories,
    write_trajectories_jsonl,
    write_trajectories_ray,
)
from nat_ray.types import SCHEMA_VERSION, TRAJECTORY_ARROW_SCHEMA, Label, Trajectory
from tests.test_types import make_trajectory


def sample(n: int) -> list[Trajectory]:
    return [
        make_trajectory(
            id=f"q{i}",
            sample_index=i % 3,
            label=Label.POSITIVE if i % 2 else Label.NEGATIVE,
            reward=bool(i % 2),
            f1=None if i % 4 else 0.5,
            em=None if i % 5 else True,
        )
        for i in range(n)
    ]


def test_parquet_round_trip_keeps_order_and_values(tmp_path: Path) -> None:
    trajs = sample(25)
    write_trajectories(trajs, tmp_path / "ds", manifest("trajectories", {"k": 1}, {"n": 25}))
    assert read_trajectories(tmp_path / "ds") == trajs
    meta = json.loads((tmp_path / "ds/_manifest.json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION and meta["config"] == {"k": 1}


def test_version_1_parts_without_malformed_reply_are_still_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**t.to_row(), "schema_version": 1} for t in sample(3)]
    for row in rows:
        del row["malformed_reply"]
    v1 = pa.schema([f for f in TRAJECTORY_ARROW_SCHEMA if f.name != "malformed_reply"])
    (tmp_path / "old").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=v1), tmp_path / "old/part-00000.parquet")
    got = read_trajectories(tmp_path / "old")
    assert [t.id for t in got] == [r["id"] for r in rows]
    assert all(t.schema_version == SCHEMA_VERSION and t.malformed_reply is None for t in got)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    trajs = sample(7)
    assert write_trajectories_jsonl(trajs, tmp_path / "t.jsonl") == 7
    assert read_trajectories_jsonl(tmp_path / "t.jsonl") == trajs


def test_invalid_rows_name_the_place(tmp_path: Path) -> None:
    rows = [t.to_row() for t in sample(3)]
    rows[2]["label"] = "meh"
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"t\.jsonl:3: not a valid trajectory: field label"):
        read_trajectories_jsonl(tmp_path / "t.jsonl")
    with pytest.raises(InputError, match="no such dataset folder"):
        read_trajectories(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Parquet files"):
        read_trajectories(tmp_path / "empty")


def test_read_records_errors(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text('{"not": "a list"}')
    with pytest.raises(InputError, match=r"x\.json: expected a JSON list"):
        read_records(f)
    f.write_text('[{"a": 1}, 3]')
    with pytest.raises(InputError, match=r"x\.json\[1\]: expected a JSON object"):
        read_records(f)


def test_atomic_file_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_refuses_to_clobber_and_swaps_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    write_trajectories(sample(2), out)
    with pytest.raises(InputError, match="already exists"):
        write_trajectories(sample(3), out)
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "junk").write_text("x")
        raise RuntimeError("crash")
    assert len(read_trajectories(out)) == 2
    write_trajectories(sample(3), out, overwrite=True)
    assert len(read_trajectories(out)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)


@pytest.mark.slow
def test_ray_dataset_round_trip(tmp_path: Path, ray_local) -> None:
    trajs = sample(40)
    write_trajectories(trajs, tmp_path / "ds")
    ds = read_trajectories_ray(tmp_path / "ds")
    assert ds.count() == 40
    assert ds.filter(expr="label == 'positive'").count() == 20
    write_trajectories_ray(ds.repartition(3), tmp_path / "ds2", manifest("trajectories", {"via": "ray"}, {"n": 40}))
    back = read_trajectories(tmp_path / "ds2")
    assert sorted(back, key=lambda t: t.id) == sorted(trajs, key=lambda t: t.id)
    assert dataset_manifest(tmp_path / "ds2") == manifest("trajectories", {"via": "ray"}, {"n": 40})
