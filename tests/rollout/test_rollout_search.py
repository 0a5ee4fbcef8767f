"""HotpotQA and StrategyQA episodes end to end through the rollout stage with the local search backend: a search
actor pool (MiniLM filter over BM25 candidates, shared cache) answering the env workers on a real local Ray cluster.

The policies here are scripted (the recorded GPT-3.5 StrategyQA turns; a HotpotQA script that searches a title and
answers): SmolLM2-135M rarely writes a well-formed search action, and these tests are about the search stage.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.config import RunConfig, load_config
from nat_ray.errors import InputError
from nat_ray.nat_import import ImportConfig, import_nat
from nat_ray.react import parse_reply
from nat_ray.rollout.driver import run_rollout
from nat_ray.storage import manifest, read_records, read_trajectories, write_trajectories
from nat_ray.tasks import get_task
from nat_ray.tools.search import search_queries
from nat_ray.types import Label, Trajectory, Turn

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, index: Path, minilm: Path, task: str, replay: Path, *extra: str) -> RunConfig:
    return load_config(
        None,
        [
            f"out={tmp_path / 'run'}",
            f"rollout={{task: {task}, limit: 6, temperatures: [0.2], env_workers: {{min: 1, max: 1}}, batch_size: 2}}",
            f"policy={{kind: scripted, script: replay, replay_from: '{replay}'}}",
            f"tools.search={{kind: local, index: {{path: '{index}'}}, embed_model: '{minilm}', num_cpus: 0.5,"
            f" cache: '{tmp_path / 'cache.jsonl'}'}}",
            *extra,
        ],
    )


def _searches(traj: Trajectory) -> list[tuple[str, str]]:
    """(query, observation) for each search action the episode made."""
    out = []
    for turn, nxt in zip(traj.turns, traj.turns[1:], strict=False):
        action = parse_reply(turn.content) if turn.role == "assistant" else None
        if action is not None and action.type == "search":
            out.append((action.argument, nxt.content.removeprefix("Observation: ")))
    return out


def _direct(cfg: RunConfig, queries: list[str]) -> list[str]:
    return search_queries(cfg.tools.search, queries)[0]  # no cache: computed afresh


def test_strategyqa_episodes_search_the_local_corpus(
    tmp_path: Path, search_index: Path, minilm: Path, strategyqa_files: dict, ray_local
) -> None:
    files = [str(strategyqa_files[side]) for side in ("positive", "negative")]
    import_nat(
        ImportConfig(
            task="strategyqa", questions=str(strategyqa_files["questions"]), out=str(tmp_path / "rec"), files=files
        )
    )
    cfg = _config(tmp_path, search_index, minilm, "strategyqa", tmp_path / "rec", "rollout.split=train")
    meta = run_rollout(cfg, progress=False)
    trajs = read_trajectories(cfg.trajectories_dir())
    assert meta["complete"] and len(trajs) == 6 and meta["counts"]["error"] == 0
    pairs = [p for t in trajs for p in _searches(t)]
    assert len(pairs) >= 6  # the recorded GPT-3.5 turns search at least once per question
    # every observation is the local pipeline's answer to that query, in the paper's format
    assert [o for _, o in pairs] == _direct(cfg, [q for q, _ in pairs])
    assert all(o.startswith(" #1: ") for _, o in pairs)
    assert all(t.label in (Label.POSITIVE, Label.NEGATIVE) for t in trajs)
    search = meta["run"]["tool_pools"]["search"]
    (member,) = search["members"]
    assert member["queries"] == len(pairs) and member["errors"] == 0
    assert member["cache"]["misses"] + member["cache"]["hits"] == len(pairs)

    # a second run (another output, the same shared cache) answers every query from the cache
    again = cfg.model_copy(update={"out": str(tmp_path / "run2")})
    meta2 = run_rollout(again, progress=False)
    (member2,) = meta2["run"]["tool_pools"]["search"]["members"]
    assert member2["cache"]["misses"] == 0 and member2["cache"]["hits"] == len(pairs)
    assert sorted(p for t in read_trajectories(again.trajectories_dir()) for p in _searches(t)) == sorted(pairs)


def _hotpot_script(data_dir: Path, out: Path) -> list[dict]:
    """Replay trajectories for the first 6 rpt_dev questions: search a supporting title, then answer — correctly
    for the even ones, wrongly for the odd ones (so grading has both outcomes)."""
    rows = [rec for _, rec in read_records(data_dir / "hotpotqa_distractor/rpt_dev.jsonl")][:6]
    trajs = []
    for i, rec in enumerate(rows):
        title = rec["supporting_facts"]["title"][0]
        answer = rec["answer"] if i % 2 == 0 else "certainly not this"
        turns = [
            Turn(role="assistant", content=f"Thought: look it up.\nAction: search[{title}]", loss=True),
            Turn(role="user", content="Observation: (recorded)", loss=False),
            Turn(role="assistant", content=f"Thought: done.\nAction: finish[{answer}]", loss=True),
        ]
        trajs.append(
            Trajectory(
                id=rec["id"],
                task="hotpotqa",
                question=rec["question"],
                ground_truth=rec["answer"],
                turns=turns,
                label=Label.POSITIVE,
            )
        )
    write_trajectories(trajs, out, manifest("trajectories", {"source": "test script"}, {"trajectories": len(trajs)}))
    return rows


def test_hotpotqa_episodes_search_the_local_corpus(
    tmp_path: Path, search_index: Path, minilm: Path, data_dir: Path, ray_local
) -> None:
    rows = _hotpot_script(data_dir, tmp_path / "script")
    cfg = _config(
        tmp_path,
        search_index,
        minilm,
        "hotpotqa",
        tmp_path / "script",
        "rollout.questions=hotpotqa_distractor/rpt_dev.jsonl",
    )
    meta = run_rollout(cfg, progress=False)
    trajs = {t.id: t for t in read_trajectories(cfg.trajectories_dir())}
    assert meta["complete"] and len(trajs) == 6 and meta["counts"]["error"] == 0
    assert meta["counts"]["positive"] == 3 and meta["counts"]["negative"] == 3
    for i, rec in enumerate(rows):
        t = trajs[rec["id"]]
        assert t.label == (Label.POSITIVE if i % 2 == 0 else Label.NEGATIVE)
        ((query, obs),) = _searches(t)
        title = rec["supporting_facts"]["title"][0]
        assert query == title and obs == _direct(cfg, [title])[0]
        assert f"#1: {title}: " in obs  # searching a paragraph's own title finds that paragraph first
    assert get_task("hotpotqa").tool == "search"


def test_missing_index_or_model_stops_before_any_work(tmp_path: Path, search_index: Path, minilm: Path) -> None:
    replay = tmp_path / "none"
    cfg = _config(tmp_path, tmp_path / "no-index", minilm, "hotpotqa", replay)
    with pytest.raises(InputError, match="nat-ray search build-index"):
        run_rollout(cfg, progress=False)
    cfg = _config(tmp_path, search_index, tmp_path / "no-model", "hotpotqa", replay)
    with pytest.raises(InputError, match=r"tools.search.embed_model: model folder .* does not exist"):
        run_rollout(cfg, progress=False)
    assert not (tmp_path / "run").exists()
