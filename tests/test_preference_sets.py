"""build --mode dpo / kto on the shipped StrategyQA GPT-3.5 trajectories: TRL's formats, pairs on one question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.reformat import BuildConfig, build
from nat_ray.storage import read_training_rows, read_trajectories
from nat_ray.types import Label, LabelledCompletion, PreferencePair
from tests.conftest import strategyqa_nat_set


@pytest.fixture(scope="module")
def shipped(strategyqa_files: dict[str, Path], tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("pref")
    strategyqa_nat_set(strategyqa_files, work, work / "nat.jsonl", pos=1, neg=1)  # imports the trajectories once
    return work / "trajectories", strategyqa_files["prompts"]


def _build(shipped: tuple[Path, Path], out: Path, mode: str, pos: int, neg: int, **kw) -> dict:
    trajectories, prompts = shipped
    config = BuildConfig(trajectories=str(trajectories), prompts=str(prompts), mode=mode, pos_num=pos, neg_num=neg,
                         out=str(out), **kw)  # fmt: skip
    return build(config).counts


def test_dpo_pairs_share_the_question_chosen_positive_rejected_negative(shipped, tmp_path: Path) -> None:
    counts = _build(shipped, tmp_path / "dpo.jsonl", "dpo", 0, 40)
    trajs = read_trajectories(shipped[0])
    by_turns = {(t.id, tuple(x.content for x in t.turns)): t.label for t in trajs}
    pairs = read_training_rows(tmp_path / "dpo.jsonl", PreferencePair)
    assert len(pairs) == counts["pairs"] == 40 and counts["questions"] == 40  # one positive per question here
    assert counts["questions_both_kinds"] == 429 and counts["questions_left_out"] == 1290 - 429
    for p in pairs:
        assert by_turns[(p.id, tuple(m.content for m in p.chosen))] == Label.POSITIVE
        assert by_turns[(p.id, tuple(m.content for m in p.rejected))] == Label.NEGATIVE
        assert p.prompt[-1].role == "user" and p.chosen[0].role == p.rejected[0].role == "assistant"
    row = json.loads((tmp_path / "dpo.jsonl").read_text().splitlines()[0])
    assert set(row) == {"id", "prompt", "chosen", "rejected"} and set(row["chosen"][0]) == {"role", "content"}
    manifest = json.loads((tmp_path / "dpo.jsonl.manifest.json").read_text())
    assert manifest["counts"]["pairs"] == 40 and manifest["config"]["mode"] == "dpo"
    again = _build(shipped, tmp_path / "again.jsonl", "dpo", 0, 40)  # seeded: the same pairs
    assert again == counts and (tmp_path / "again.jsonl").read_text() == (tmp_path / "dpo.jsonl").read_text()
    with pytest.raises(InputError, match=r"--neg-num 5000 pairs asked but the trajectories make only \d+"):
        _build(shipped, tmp_path / "x.jsonl", "dpo", 0, 5000)


def test_kto_keeps_the_papers_selection_with_labels(shipped, tmp_path: Path) -> None:
    counts = _build(shipped, tmp_path / "kto", "kto", 6, 4)  # a Parquet folder
    rows = read_training_rows(tmp_path / "kto", LabelledCompletion)
    assert counts == {"examples": 10, "positives": 6, "negatives": 4}
    assert [r.label for r in rows] == [True] * 6 + [False] * 4
    positives = [t for t in read_trajectories(shipped[0]) if t.label == Label.POSITIVE][:6]
    assert [r.id for r in rows[:6]] == [t.id for t in positives]  # the first N positives, as the paper's loader
    with pytest.raises(InputError, match="mode kto: the selection has no negative trajectory; KTO needs both"):
        _build(shipped, tmp_path / "y.jsonl", "kto", 4, 0)


def test_dpo_without_a_question_of_both_kinds_says_what_is_missing(shipped, tmp_path: Path) -> None:
    from nat_ray.storage import write_trajectories

    only = [t for t in read_trajectories(shipped[0]) if t.label == Label.NEGATIVE][:5]
    write_trajectories(only, tmp_path / "neg")
    trajectories = (tmp_path / "neg", shipped[1])
    with pytest.raises(InputError, match=r"mode dpo: no question has both a positive and a negative trajectory \(0 q"):
        _build(trajectories, tmp_path / "z.jsonl", "dpo", 0, 1)


def test_a_round_set_mixes_the_collected_selection_before_its_own(shipped, tmp_path: Path) -> None:
    from nat_ray.storage import write_trajectories

    own = [t for t in read_trajectories(shipped[0])][-6:]  # stands in for a round's rollout
    write_trajectories(own, tmp_path / "round")
    counts = _build((tmp_path / "round", shipped[1]), tmp_path / "r2.jsonl", "nat", -1, -1,
                    mix_from=str(shipped[0]), mix_pos_num=3, mix_neg_num=2)  # fmt: skip
    rows = [json.loads(x) for x in (tmp_path / "r2.jsonl").read_text().splitlines()]
    assert counts["examples"] == 5 + 6 and len(rows) == 11
    first = [t for t in read_trajectories(shipped[0]) if t.label == Label.POSITIVE][:3]
    assert [r["id"] for r in rows[:3]] == [t.id for t in first]  # the collected selection, positives first


def test_paired_selection_gives_every_mode_the_same_trajectories(shipped, tmp_path: Path) -> None:
    def rows(mode: str, pos: int, neg: int) -> list[dict]:
        counts = _build(shipped, tmp_path / f"{mode}.jsonl", mode, pos, neg, selection="paired", seed=7)
        out = [json.loads(x) for x in (tmp_path / f"{mode}.jsonl").read_text().splitlines()]
        assert counts["examples"] == len(out)
        return out

    def key(messages: list[dict]) -> tuple[str, ...]:  # a trajectory by its assistant turns
        return tuple(m["content"] for m in messages if m["role"] == "assistant")

    vanilla, nut, nat = rows("vanilla", 30, 0), rows("nut", 30, 30), rows("nat", 30, 30)
    dpo, kto = rows("dpo", 30, 30), rows("kto", 30, 30)
    assert len(vanilla) == 30 and len(nut) == len(nat) == len(kto) == 60 and len(dpo) == 30
    questions = [r["id"] for r in vanilla]
    assert len(set(questions)) == 30  # one pair per question
    assert [r["id"] for r in nut] == [r["id"] for r in nat] == questions * 2 == [r["id"] for r in kto]
    assert [r["id"] for r in dpo] == questions
    n = len(dpo[0]["prompt"])  # the template's prompt (it holds an assistant turn of its own), then the trajectory

    def turns(r: dict) -> tuple[str, ...]:
        return key(r["messages"][n:])

    positives, negatives = [turns(r) for r in vanilla], [turns(r) for r in nut[30:]]
    assert [turns(r) for r in nut[:30]] == positives == [turns(r) for r in nat[:30]]
    assert [key(r["chosen"]) for r in dpo] == positives and [key(r["rejected"]) for r in dpo] == negatives
    assert [key(r["completion"]) for r in kto] == positives + negatives
    assert [r["label"] for r in nat] == ["positive"] * 30 + ["negative"] * 30
    assert [r["label"] for r in kto] == [True] * 30 + [False] * 30
    labels = {(t.id, key([{"role": x.role, "content": x.content} for x in t.turns])): t.label
              for t in read_trajectories(shipped[0])}  # fmt: skip
    assert all(labels[(q, p)] == Label.POSITIVE for q, p in zip(questions, positives, strict=True))
    assert all(labels[(q, n)] == Label.NEGATIVE for q, n in zip(questions, negatives, strict=True))
    assert rows("nut", 30, 10)[30:] == nut[30:40]  # fewer negatives: those of the first pairs
    other = _build(shipped, tmp_path / "other.jsonl", "vanilla", 30, 0, selection="paired", seed=8)
    assert (
        other["examples"] == 30 and (tmp_path / "other.jsonl").read_text() != (tmp_path / "vanilla.jsonl").read_text()
    )
    with pytest.raises(
        InputError, match="paired: 500 questions asked but only 429 have both a positive and a negative"
    ):
        _build(shipped, tmp_path / "z.jsonl", "nat", 500, 500, selection="paired")
