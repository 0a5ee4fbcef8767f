from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.tasks import TASKS, get_task, load_questions, load_questions_file, resolve_data_dir

EXPECTED = {
    ("gsm8k", "train"): 7473,
    ("gsm8k", "test"): 1319,
    ("asdiv", "test"): 2023,
    ("svamp", "test"): 1000,
    ("multiarith", "test"): 596,
    ("hotpotqa", "train"): 8000,
    ("hotpotqa", "test"): 500,
    ("strategyqa", "train"): 1290,
    ("strategyqa", "test"): 500,
}


@pytest.mark.parametrize(("task", "split"), sorted(EXPECTED))
def test_every_task_split_loads(task: str, split: str, data_dir: Path) -> None:
    questions = load_questions(task, split, data_dir)
    assert len(questions) == EXPECTED[(task, split)]
    assert len({q.id for q in questions}) == len(questions)
    assert all(q.question and q.ground_truth for q in questions)


def test_ground_truths_are_canonical(data_dir: Path) -> None:
    gsm = load_questions("gsm8k", "test", data_dir)
    assert gsm[0].ground_truth == "18" and gsm[0].id == "0"
    train = load_questions("gsm8k", "train", data_dir)  # no ids in the file: position, as the paper's scripts
    assert [q.id for q in train[:3]] == ["0", "1", "2"] and train[0].ground_truth == "72"
    assert load_questions("svamp", "test", data_dir)[0].ground_truth == "51"
    assert load_questions("asdiv", "test", data_dir)[0].ground_truth == "9"
    assert {q.ground_truth for q in load_questions("strategyqa", "test", data_dir)} == {"true", "false"}
    assert load_questions("hotpotqa", "test", data_dir)[0].ground_truth == "Richard Strauss"


def test_paper_spellings_and_case_are_accepted() -> None:
    for name in ("ASDiv", "SVAMP", "MultiArith", "StrategyQA", "GSM8K", "HotpotQA"):
        assert get_task(name).name == name.lower()
    assert {t.paper_name for t in TASKS.values()} == {"gsm8k", "ASDiv", "SVAMP", "MultiArith", "hotpotqa", "StrategyQA"}


def test_unknown_task_and_split() -> None:
    with pytest.raises(InputError, match=r"unknown task 'mmlu'.*gsm8k"):
        get_task("mmlu")
    with pytest.raises(InputError, match="no 'train' split"):
        load_questions("svamp", "train")


def test_data_dir_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    copy = tmp_path / "data/nat/dataset/SVAMP"
    copy.mkdir(parents=True)
    (copy / "test.jsonl").write_text('{"id": 7, "question": "1+1?", "answer": "#### 2"}\n')
    assert [q.id for q in load_questions("svamp", "test", tmp_path / "data")] == ["7"]
    monkeypatch.setenv("NAT_RAY_DATA_DIR", str(tmp_path / "data"))
    assert resolve_data_dir() == tmp_path / "data"
    monkeypatch.setenv("NAT_RAY_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(InputError, match="NAT_RAY_DATA_DIR"):
        resolve_data_dir()
    with pytest.raises(InputError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")


def test_bad_question_files_name_file_and_line(tmp_path: Path) -> None:
    task = get_task("gsm8k")
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": 1, "question": "a", "answer": "#### 1"}\n{"id": 2, "question": "b"\n')
    with pytest.raises(InputError, match=r"q\.jsonl:2: malformed JSON"):
        load_questions_file(task, bad)
    bad.write_text('{"id": 1, "question": "a", "answer": "#### 1"}\n\n{"id": 2, "question": "b"}\n')
    with pytest.raises(InputError, match=r"q\.jsonl:3: question record has no 'answer'"):
        load_questions_file(task, bad)
    bad.write_text('{"id": 1, "question": "a", "answer": "1"}\n{"id": 1, "question": "b", "answer": "2"}\n')
    with pytest.raises(InputError, match=r"q\.jsonl:2: duplicate question id '1'"):
        load_questions_file(task, bad)
    js = tmp_path / "q.json"
    js.write_text('[{"id": 1, "question": "a", "answer": "1"},\n {"id": 2,, }]')
    with pytest.raises(InputError, match=r"q\.json:2: malformed JSON"):
        load_questions_file(task, js)
    with pytest.raises(InputError, match="no such file"):
        load_questions_file(task, tmp_path / "absent.json")
    yn = tmp_path / "s.jsonl"
    yn.write_text('{"id": "a", "question": "q", "answer": "sometimes"}\n')
    with pytest.raises(InputError, match=r"s\.jsonl:1: field 'answer'"):
        load_questions_file(get_task("strategyqa"), yn)
