from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.nat_import import ImportConfig, import_nat
from nat_ray.prompts import get_template, load_templates
from nat_ray.reformat import ALL, BuildConfig, build, build_examples, select
from nat_ray.storage import read_examples, read_trajectories
from nat_ray.tasks import get_task, load_questions
from nat_ray.types import Label
from tests.paper_loader import paper_examples
from tests.test_types import make_trajectory


@pytest.fixture(scope="module")
def strategyqa_ds(tmp_path_factory, strategyqa_files) -> Path:
    out = tmp_path_factory.mktemp("sq") / "traj"
    f = strategyqa_files
    import_nat(
        ImportConfig(
            task="strategyqa",
            questions=str(f["questions"]),
            out=str(out),
            files=[str(f["positive"]), str(f["negative"])],
        )
    )
    return out


def _as_paper(examples) -> list[tuple]:
    return [(e.id, [m.model_dump() for m in e.messages]) for e in examples]


@pytest.mark.parametrize(
    ("mode", "template", "pos", "neg"),
    [
        ("vanilla", "zero-shot", 1070, 0),
        ("nut", "zero-shot", 1070, 1263),
        ("nat", "zero-shot-target-aware", 1070, 1263),
        ("nat", "zero-shot-target-aware", 500, 700),
        ("nat", "zero-shot-target-aware", 100, 12),
    ],
)
def test_identical_to_the_paper_loader_on_shipped_strategyqa(
    tmp_path: Path, strategyqa_ds: Path, strategyqa_files, mode: str, template: str, pos: int, neg: int
) -> None:
    f = strategyqa_files
    cfg = BuildConfig(
        trajectories=str(strategyqa_ds),
        prompts=str(f["prompts"]),
        mode=mode,
        pos_num=pos,
        neg_num=neg,
        out=str(tmp_path / "x.jsonl"),
    )
    meta = build(cfg)
    ours = read_examples(tmp_path / "x.jsonl")
    paper = paper_examples(
        str(f["positive"]), str(f["negative"]), str(f["prompts"]), template, str(f["questions"]), pos, neg
    )
    assert meta.counts == {"examples": pos + neg, "positives": pos, "negatives": neg}
    assert _as_paper(ours) == [(p["id"], p["conversations"]) for p in paper]
    assert [e.label for e in ours] == ["positive"] * pos + ["negative"] * neg
    for e in ours:  # loss exactly on the trajectory's assistant turns
        n_prompt = 3
        assert not any(m.loss for m in e.messages[:n_prompt])
        assert all(m.loss == (m.role == "assistant") for m in e.messages[n_prompt:])


def test_nat_hints_are_the_template_texts(tmp_path: Path, strategyqa_ds: Path, strategyqa_files) -> None:
    cfg = BuildConfig(
        trajectories=str(strategyqa_ds),
        prompts=str(strategyqa_files["prompts"]),
        mode="nat",
        pos_num=5,
        neg_num=5,
        out=str(tmp_path / "x"),
    )
    build(cfg)
    ex = read_examples(tmp_path / "x")  # a Parquet dataset folder
    assert all(e.messages[2].content.endswith("solve the question **correctly**.") for e in ex[:5])
    assert all(e.messages[2].content.endswith("But **incorrectly** solve the question.") for e in ex[5:])
    assert json.loads((tmp_path / "x/_manifest.json").read_text())["config"]["template"] == "zero-shot-target-aware"


def test_ablation_template_prefix_ab(tmp_path: Path, data_dir: Path) -> None:
    # The AB ablation exists in the GSM8K prompts: [A] for positives, [B] for negatives.
    prompts = data_dir / "nat/prompts/gsm8k/gsm8k_conversation.json"
    trajs = [
        make_trajectory(id=str(i), reward=bool(i % 2), label=Label.POSITIVE if i % 2 else Label.NEGATIVE)
        for i in range(10)
    ]
    ex = build_examples(trajs, get_template(prompts, "zero-shot-target-aware-prefix-AB"), "nat", 5, 5)
    assert [e.messages[2].content[:4] for e in ex] == ["[A] "] * 5 + ["[B] "] * 5


def _hotpot_files(tmp_path: Path, data_dir: Path) -> tuple[Path, Path, Path]:
    """HotpotQA trajectory files in the paper's format (none are shipped): answers of graded quality."""
    task = get_task("hotpotqa")
    qs = load_questions(task, "train", data_dir)[:60]
    rng = random.Random(1)
    pos, neg = [], []
    for q in qs:
        words = q.ground_truth.split()
        for pred in (
            q.ground_truth,
            " ".join(words[: max(1, len(words) // 2)]),
            "no idea",
            q.ground_truth + " and more words here",
        ):
            g = task.grade(q.ground_truth, pred)
            rec = {
                "conversations": [
                    {"role": "assistant", "content": f"Thought: t\nAction: search[{q.question[:20]}]", "loss": True},
                    {"role": "user", "content": "Observation: stuff", "loss": False},
                    {"role": "assistant", "content": f"Action: finish[{pred}]", "loss": True},
                ],
                "info": {"reward": g.reward, "em": g.em, "f1": g.f1, "gt": q.ground_truth, "pred": pred},
                "id": int(q.id),
                "source": str(rng.choice([0.2, 0.5, 0.7])),
            }
            (pos if g.reward else neg).append(rec)
    p, n = tmp_path / "hotpotqa_gpt-3.5_positive.json", tmp_path / "hotpotqa_gpt-3.5_negative.json"
    p.write_text(json.dumps(pos))
    n.write_text(json.dumps(neg))
    return p, n, data_dir / task.splits["train"]


@pytest.mark.parametrize("template", ["zero-shot-target-aware-four-class", "zero-shot-target-aware-three-class"])
def test_graded_nat_is_identical_to_the_paper_loader(tmp_path: Path, data_dir: Path, template: str) -> None:
    p, n, questions = _hotpot_files(tmp_path, data_dir)
    import_nat(
        ImportConfig(task="hotpotqa", questions=str(questions), out=str(tmp_path / "ds"), files=[str(p), str(n)])
    )
    prompts = data_dir / "nat/prompts/hotpotqa/hotpotqa_conversation.json"
    n_pos = len(json.loads(p.read_text()))
    cfg = BuildConfig(
        trajectories=str(tmp_path / "ds"),
        prompts=str(prompts),
        mode="nat-graded",
        template=template,
        pos_num=40,
        neg_num=90,
        out=str(tmp_path / "g.jsonl"),
    )
    build(cfg)
    ours = read_examples(tmp_path / "g.jsonl")
    paper = paper_examples(str(p), str(n), str(prompts), template, str(questions), 40, 90)
    assert _as_paper(ours) == [(str(x["id"]), x["conversations"]) for x in paper]
    hints = {e.messages[2].content.split("]")[0] + "]" for e in ours}
    expected = 4 if "four" in template else 3
    assert len(hints) == expected, hints
    assert n_pos >= 40


def test_selection_rules() -> None:
    trajs = [
        make_trajectory(id=str(i), reward=i % 3 == 0, label=[Label.POSITIVE, Label.NEGATIVE, Label.ERROR][i % 3])
        for i in range(30)
    ]
    chosen = select(trajs, 4, 6, seed=7)
    assert [t.id for t in chosen[:4]] == ["0", "3", "6", "9"]
    negs = [t for t in trajs if t.label == Label.NEGATIVE]
    assert [t.id for t in chosen[4:]] == [t.id for t in random.Random(7).sample(negs, 6)]
    assert all(t.label != Label.ERROR for t in select(trajs, ALL, ALL, 0))
    assert len(select(trajs, ALL, ALL, 0)) == 20
    assert select(trajs, 4, 6, seed=7) == chosen
    assert select(trajs, 4, 6, seed=8)[4:] != chosen[4:]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(pos_num=11, neg_num=0), "only 10 positives"),
        (dict(pos_num=1, neg_num=11), "only 10 negatives"),
        (dict(mode="vanilla", neg_num=2), "positives only"),
        (dict(mode="nat", template="zero-shot"), "has no 'correct_question_prompt'"),
        (dict(mode="nut", template="zero-shot-target-aware"), "has no 'question_prompt'"),
        (dict(mode="nat", template="nope"), "unknown template 'nope'"),
        (dict(mode="nat-graded", template="zero-shot-target-aware-four-class"), "has no f1"),
    ],
)
def test_build_errors(tmp_path: Path, data_dir: Path, kwargs: dict, message: str) -> None:
    trajs = [
        make_trajectory(id=str(i), reward=i < 10, label=Label.POSITIVE if i < 10 else Label.NEGATIVE) for i in range(20)
    ]
    from nat_ray.storage import write_trajectories

    write_trajectories(trajs, tmp_path / "ds")
    prompts = data_dir / "nat/prompts/hotpotqa/hotpotqa_conversation.json"
    args = (
        dict(
            trajectories=str(tmp_path / "ds"),
            prompts=str(prompts),
            mode="nat",
            pos_num=1,
            neg_num=1,
            out=str(tmp_path / "o.jsonl"),
        )
        | kwargs
    )
    with pytest.raises(InputError, match=message):
        build(BuildConfig(**args))
    assert not (tmp_path / "o.jsonl").exists()
    assert len(read_trajectories(tmp_path / "ds")) == 20


def test_every_shipped_template_loads(data_dir: Path) -> None:
    for path in sorted((data_dir / "nat/prompts").glob("*/*_conversation.json")):
        templates = load_templates(path)
        assert templates, path
        for t in templates.values():
            assert t.inference_messages("Q?")[-1].content.count("Q?") == 1
