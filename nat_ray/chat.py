"""Chat with an agent: type a question, watch Thought / Action / Observation arrive turn by turn with the real tools
until ``finish`` (the paper's ``utils/interactive.py``). No Ray: one model in this process.

    nat-ray chat --model runs/nat/checkpoint --task gsm8k
    echo "What is 17 * 23 + 4?" | nat-ray chat --model smollm2 --task gsm8k --hint none
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nat_ray.errors import InputError
from nat_ray.policy.base import SamplingParams
from nat_ray.prompts import PromptTemplate
from nat_ray.react import Episode
from nat_ray.reformat import HINT_MODES
from nat_ray.tasks import Question, TaskSpec
from nat_ray.tools.base import Tool
from nat_ray.tools.config import SearchConfig

HINTS = ("auto", "correct", "incorrect", "none")


def chat_prompt(
    template_for: Callable[[str], PromptTemplate], hint: str, trained_template: str | None, name: str | None = None
):
    """(template, question prompt) for a hint: ``correct`` / ``incorrect`` use the NAT template's hint (``name``,
    else the one the checkpoint was trained with, else ``zero-shot-target-aware``), ``none`` the plain prompt of
    ``name`` (default ``zero-shot``)."""
    if hint == "none":
        template = template_for(name or "zero-shot")
        return template, template.require("question_prompt")
    template = template_for(name or trained_template or "zero-shot-target-aware")
    if hint == "correct":
        return template, template.inference_prompt()
    return template, template.require("incorrect_question_prompt")


@dataclass
class ChatAgent:
    task: TaskSpec
    template: PromptTemplate
    question_prompt: str
    generate: Callable[[list[dict[str, str]], SamplingParams], str]
    tools: dict[str, Tool]
    temperature: float = 0.2
    max_turns: int = 6
    max_tokens: int = 512

    async def run(self, question: str, emit: Callable[[str], None]) -> str | None:
        """One episode; every reply and observation goes to ``emit`` as it arrives. Returns the answer."""
        episode = Episode(
            task=self.task,
            question=Question(id="chat", question=question, ground_truth=""),
            prompt=self.template.messages(self.question_prompt, question),
            tools=frozenset(self.tools),
            max_turns=self.max_turns,
        )
        params = SamplingParams(temperature=self.temperature, max_tokens=self.max_tokens)
        while not episode.done:
            reply = self.generate(episode.messages(), params)
            emit(reply.strip())
            action = episode.step(reply)
            if action is not None:
                observation = await self.tools[action.type](action.argument)
                emit(f"Observation: {observation}")
        reason = episode.finish_reason.value if episode.finish_reason else "?"
        if episode.prediction is not None:
            emit(f"[finished: answer {episode.prediction!r}]")
        else:
            emit(f"[ended: {reason}]")
        return episode.prediction

    async def loop(self, lines: Iterable[str], emit: Callable[[str], None], prompt: Callable[[], None]) -> int:
        n = 0
        prompt()
        for line in lines:
            question = line.strip()
            if question in ("exit", "quit"):
                break
            if question:
                await self.run(question, emit)
                n += 1
            prompt()
        return n


def build_chat(
    model: str,
    task_name: str,
    hint: str = "auto",
    search: SearchConfig | None = None,
    data_dir: str | None = None,
    temperature: float = 0.2,
    max_tokens: int = 512,
    template_name: str | None = None,
) -> ChatAgent:
    """A chat agent on a local model folder (or a prepared name) with the task's real tool."""
    from nat_ray.models import resolve_model_path, training_info
    from nat_ray.policy.hf_engine import HFEngine
    from nat_ray.prompts import get_template
    from nat_ray.tasks import get_task, prompts_file

    task = get_task(task_name)
    path = resolve_model_path(model)
    training = training_info(path)
    nat = training is not None and training.get("mode") in HINT_MODES
    if hint == "auto":
        hint = "correct" if nat else "none"
    trained = training.get("template") if nat and training else None
    prompts = prompts_file(task, data_dir)
    template, question_prompt = chat_prompt(lambda n: get_template(prompts, n), hint, trained, template_name)
    tools: dict[str, Tool] = {}
    if task.tool == "calculate":
        from nat_ray.tools.calculator import Calculator

        calc = Calculator()

        async def calculate(expression: str) -> str:
            return calc(expression)

        tools["calculate"] = calculate
    else:
        from nat_ray.tools.search import build_pipeline

        if search is None:
            raise InputError(f"task {task.name} needs the search tool: give --config FILE with a tools.search section")
        pipeline = build_pipeline(search, None)

        async def search_tool(query: str) -> str:
            return (await pipeline.search([query]))[0]

        tools["search"] = search_tool
    engine = HFEngine(path)

    def generate(messages: list[dict[str, str]], params: SamplingParams) -> str:
        return engine.generate_batch([messages], params)[0].text

    return ChatAgent(task, template, question_prompt, generate, tools, temperature, max_tokens=max_tokens)
