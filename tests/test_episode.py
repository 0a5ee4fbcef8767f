"""The episode runner as plain async Python: real calculator, scripted or failing policies."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nat_ray.episode import EpisodeRunner, EpisodeSettings, EpisodeSpec
from nat_ray.policy.base import Completion, Policy, PolicyError, SamplingParams
from nat_ray.policy.scripted import ArithmeticPolicy, ReplayPolicy
from nat_ray.prompts import get_template
from nat_ray.tasks import get_task
from nat_ray.tools.base import ToolError
from nat_ray.tools.calculator import Calculator
from nat_ray.types import FinishReason, Label

SPEC = EpisodeSpec("gsm8k", "1", "Tom has 2 apples and buys 3 more. How many?", "5", 0.7, 2)


def _template(data_dir: Path, name: str = "zero-shot"):
    return get_template(data_dir / "nat/prompts/gsm8k/gsm8k_conversation.json", name)


def _runner(template, policy, tools, source="t", **kw) -> EpisodeRunner:
    return EpisodeRunner(EpisodeSettings(get_task("gsm8k"), template, source, **kw), policy, tools)


def _calc_tool():
    calc = Calculator(isolate=False)

    async def tool(arg: str) -> str:
        return calc(arg)

    return tool


def test_arithmetic_policy_with_the_real_calculator(data_dir: Path) -> None:
    template = _template(data_dir)
    runner = _runner(template, ArithmeticPolicy(template), {"calculate": _calc_tool()}, "test")
    t = asyncio.run(runner.run(SPEC))
    assert t.label == Label.POSITIVE and t.prediction == "5"
    assert t.turns[1].content == "Observation: 5"
    assert (t.temperature, t.sample_index, t.model, t.source) == (0.7, 2, "scripted:arithmetic", "test")


class Flaky(Policy):
    model = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def complete(self, messages, params: SamplingParams) -> Completion:
        self.calls += 1
        if self.calls <= self.failures:
            raise PolicyError("endpoint down")
        return Completion("Action: finish[5]")


def test_infrastructure_failures_are_retried_then_labelled_error(data_dir: Path) -> None:
    template = _template(data_dir)
    ok = _runner(template, Flaky(1), {}, max_attempts=2)
    assert asyncio.run(ok.run(SPEC)).label == Label.POSITIVE
    bad = _runner(template, Flaky(5), {}, max_attempts=2)
    t = asyncio.run(bad.run(SPEC))
    assert t.label == Label.ERROR and t.reward is None and t.finish_reason == FinishReason.ERROR
    assert "endpoint down" in (t.error or "")


def test_a_dead_tool_is_an_error_not_a_negative(data_dir: Path) -> None:
    async def dead(arg: str) -> str:
        raise ToolError("pool gone")

    template = _template(data_dir)
    runner = _runner(template, ArithmeticPolicy(template), {"calculate": dead})
    t = asyncio.run(runner.run(SPEC))
    assert t.label == Label.ERROR and "pool gone" in (t.error or "")


def test_replay_policy_replays_recorded_turns(tmp_path: Path, data_dir: Path) -> None:
    from nat_ray.storage import write_trajectories
    from tests.test_types import make_trajectory

    template = _template(data_dir, "zero-shot-target-aware")
    write_trajectories([make_trajectory(question=SPEC.question)], tmp_path / "ds")
    policy = ReplayPolicy(tmp_path / "ds", template, latency_s=0.01)
    runner = _runner(template, policy, {"calculate": _calc_tool()})
    t = asyncio.run(runner.run(SPEC))
    assert [x.content for x in t.turns if x.role == "assistant"] == [
        "Thought: add.\nAction: calculate[2+2]",
        "Action: finish[4]",
    ]
    assert t.label == Label.NEGATIVE  # the recorded answer (4) is wrong for this question (5)


class Rambler(Policy):
    model = "rambler"

    async def complete(self, messages, params: SamplingParams) -> Completion:
        return Completion("I think the answer is five apples.")


def test_a_malformed_reply_is_kept_on_the_trajectory_not_in_its_turns(data_dir: Path) -> None:
    t = asyncio.run(_runner(_template(data_dir), Rambler(), {"calculate": _calc_tool()}).run(SPEC))
    assert t.finish_reason == FinishReason.MALFORMED_ACTION and t.label == Label.NEGATIVE
    assert t.turns == [] and t.action_errors == 1
    assert t.malformed_reply == "I think the answer is five apples."


class Recorder(Policy):
    """Replies with a calculation, then finishes; records the seed of every call."""

    model = "recorder"

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        self.seeds.append(params.seed)
        if len(messages) < 4:
            return Completion("Thought: add.\nAction: calculate[2 + 3]")
        return Completion("Thought: done.\nAction: finish[5]")


def test_each_reply_is_seeded_from_the_run_s_seed_and_the_episode(data_dir: Path) -> None:
    from nat_ray.episode import episode_seed, seed_identity

    template, tools = _template(data_dir), {"calculate": _calc_tool()}
    policy = Recorder()
    asyncio.run(_runner(template, policy, tools, seed=11).run(SPEC))
    assert policy.seeds == [episode_seed(11, SPEC.key, 0, 0), episode_seed(11, SPEC.key, 0, 1)]
    assert len(set(policy.seeds)) == 2 and all(0 <= s < 2**63 for s in policy.seeds)  # type: ignore[operator]
    other = EpisodeSpec("gsm8k", "1", SPEC.question, "5", 0.7, 3)  # another sample of the same question
    assert episode_seed(11, other.key, 0, 0) != policy.seeds[0] != episode_seed(12, SPEC.key, 0, 0)
    greedy, unseeded = Recorder(), Recorder()
    asyncio.run(_runner(template, greedy, tools, seed=11).run(EpisodeSpec("gsm8k", "1", SPEC.question, "5", 0.0, 0)))
    asyncio.run(_runner(template, unseeded, tools).run(SPEC))
    assert greedy.seeds == [None, None] and unseeded.seeds == [None, None]
    assert (
        seed_identity(0, [0.7]) == {} and seed_identity(5, [0.0]) == {} and seed_identity(5, [0.0, 0.2]) == {"seed": 5}
    )
