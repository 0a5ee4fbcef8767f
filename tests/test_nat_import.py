from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.nat_import import ImportConfig, import_nat
from nat_ray.storage import read_trajectories
from nat_ray.types import Label


def test_shipped_strategyqa_trajectories(tmp_path: Path, strategyqa_files: dict[str, Path]) -> None:
    f = strategyqa_files
    cfg = ImportConfig(
        task="StrategyQA",
        questions=str(f["questions"]),
        out=str(tmp_path / "ds"),
        files=[str(f["positive"]), str(f["negative"])],
    )
    meta = import_nat(cfg)
    assert meta.counts == {"trajectories": 2333, "positive": 1070, "negative": 1263, "error": 0}
    trajs = read_trajectories(tmp_path / "ds")
    assert [t.label for t in trajs[:1070]] == [Label.POSITIVE] * 1070
    assert [t.label for t in trajs[1070:]] == [Label.NEGATIVE] * 1263
    raw = json.loads(f["positive"].read_text()) + json.loads(f["negative"].read_text())
    for t, r in zip(trajs, raw, strict=True):
        assert t.id == r["id"] and t.task == "strategyqa"
        assert t.reward == r["info"]["reward"]
        assert t.prediction == r["info"].get("pred")
        assert t.ground_truth == ("true" if r["info"]["gt"] else "false")
        assert t.temperature == float(r["source"])
        assert [x.model_dump() for x in t.turns] == r["conversations"]
        assert t.model == "gpt-3.5"
    first = trajs[0]
    assert first.question == "Are more people today related to Genghis Khan than Julius Caesar?"
    # every (question, temperature) once in this release: sample indexes are all 0
    assert {t.sample_index for t in trajs} == {0}
    assert len({t.episode_key for t in trajs}) == 2333


def _write(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, indent=1))
    return path


def _questions(tmp_path: Path) -> Path:
    q = tmp_path / "questions.json"
    q.write_text(json.dumps([{"id": 5, "question": "Who?", "answer": "Richard Strauss"}]))
    return q


def test_em_f1_gt_pred_are_kept_and_samples_are_counted(tmp_path: Path) -> None:
    rec = {
        "conversations": [{"role": "assistant", "content": "Action: finish[Strauss]", "loss": True}],
        "info": {"reward": False, "em": False, "f1": 0.6667, "gt": "Richard Strauss", "pred": "Strauss"},
        "id": 5,
        "source": "0.5",
    }
    traj = _write(tmp_path / "hotpotqa_gpt-4_negative.json", [rec, rec | {"source": "0.7"}, rec])
    import_nat(
        ImportConfig(task="hotpotqa", questions=str(_questions(tmp_path)), out=str(tmp_path / "o"), files=[str(traj)])
    )
    a, b, c = read_trajectories(tmp_path / "o")
    assert (a.em, a.f1, a.prediction, a.ground_truth, a.id) == (False, 0.6667, "Strauss", "Richard Strauss", "5")
    assert a.model == "gpt-4" and a.source == "nat-import:hotpotqa_gpt-4_negative.json"
    assert [(t.temperature, t.sample_index) for t in (a, b, c)] == [(0.5, 0), (0.7, 0), (0.5, 1)]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"conversations": [], "info": {"reward": True}, "id": 6}], r"\[0\]: trajectory id '6' has no question"),
        ([{"conversations": [], "info": {"reward": True}}], r"\[0\]: trajectory record has no 'id'"),
        ([{"conversations": [], "info": {}, "id": 5}], r"\[0\]: 'info' must be an object with a 'reward'"),
        (
            [
                {"conversations": [], "info": {"reward": 1}, "id": 5},
                {"conversations": [{"role": "x"}], "info": {"reward": 1}, "id": 5},
            ],
            r"\[1\]: 'conversations' must be a list",
        ),
        ({"a": 1}, "expected a JSON list"),
    ],
)
def test_bad_trajectory_files(tmp_path: Path, records, message: str) -> None:
    traj = _write(tmp_path / "t.json", records)
    cfg = ImportConfig(task="hotpotqa", questions=str(_questions(tmp_path)), out=str(tmp_path / "o"), files=[str(traj)])
    with pytest.raises(InputError, match=message):
        import_nat(cfg)
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["questions.json", "t.json"]


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    traj = tmp_path / "t.json"
    traj.write_text('[\n {"id": 5,\n  "info": {"reward": true}\n  "conversations": []}\n]')
    cfg = ImportConfig(task="hotpotqa", questions=str(_questions(tmp_path)), out=str(tmp_path / "o"), files=[str(traj)])
    with pytest.raises(InputError, match=r"t\.json:4: malformed JSON"):
        import_nat(cfg)
    assert not (tmp_path / "o").exists()
