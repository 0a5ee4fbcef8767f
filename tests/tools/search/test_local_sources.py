"""Corpus sources of the local search backend: the opt-in StrategyQA test explanations carry no verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

from nat_ray.tools.search.local import SOURCES, build_index, strategyqa_explanations

BARE = re.compile(r"^\s*(yes|no)\b", re.IGNORECASE)


def test_explanations_never_start_with_or_consist_of_a_bare_yes_or_no(data_dir: Path) -> None:
    passages = list(strategyqa_explanations(data_dir))
    raw = [json.loads(x)["explanation"] for x in (data_dir / "nat/dataset/strategyqa/test_random_500.jsonl").open()]
    assert sum(BARE.match(x) is not None for x in raw) == 500  # every source explanation opens with its verdict
    assert len(passages) == 500
    assert not [p.text for p in passages if BARE.match(p.text) or p.text.strip(" .").lower() in ("yes", "no", "")]
    first = next(p for p in passages if p.link == "strategyqa-test:456")
    assert first.text.startswith("Igor Karkaroff is the headmaster of Durmstrang school.")


def test_the_source_is_opt_in_and_builds_into_an_index(tmp_path: Path, data_dir: Path) -> None:
    from nat_ray.tools.config import SearchIndexConfig

    assert "strategyqa_test_explanations" in SOURCES
    assert "strategyqa_test_explanations" not in SearchIndexConfig(path="x").sources
    meta = build_index(tmp_path / "idx", ["strategyqa_test_explanations"], data_dir=data_dir)
    assert meta.passages == 500
