"""Typed, validated experiment config: a YAML file plus ``key=value`` overrides. Unknown keys are errors.

    nat-ray rollout --config configs/rollout_gsm8k_smollm2.yaml rollout.limit=16 policy.temperature=0.2

Override values are parsed as YAML (``rollout.temperatures=[0.2,0.7]``, ``rollout.env_workers=[1,4]``). The full,
resolved config is saved beside every output (the ``_manifest.json`` of the dataset it made).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from nat_ray.config_sections import BuildStageConfig, CollectConfig, StudyConfig, TrackingConfig
from nat_ray.config_train import TrainConfig
from nat_ray.engines import CLIENT_KINDS, ENGINES
from nat_ray.errors import InputError
from nat_ray.tools.config import PoolConfig, ToolsConfig
from nat_ray.types import StrictModel
from nat_ray.urls import refuse_credentials


class PolicyConfig(StrictModel):
    """Who answers: an OpenAI-compatible endpoint, in-cluster engine actors, or a scripted policy (tests)."""

    # openai | scripted (clients), or an in-cluster engine of nat_ray.engines.ENGINES: transformers, vllm, openvino
    kind: str
    # endpoint model name (openai); model folder or prepared name (transformers, vllm, openvino: exported to OpenVINO
    # IR once, or an IR folder)
    model: str = ""
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored
    max_tokens: int = Field(512, gt=0)
    max_concurrency: int = Field(64, gt=0)  # in-flight requests per env worker (openai)
    max_retries: int = Field(5, ge=0)
    timeout_s: float = Field(300.0, gt=0)
    replicas: int = Field(1, gt=0)  # engine actors (transformers, vllm)
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)
    max_batch_size: int = Field(16, gt=0)
    # transformers engine: cached (continuous batching that keeps each conversation's KV cache between turns; the
    # fastest here, docs/benchmarks.md), static (window batches) or continuous (transformers' continuous batching)
    batching: Literal["cached", "static", "continuous"] = "cached"
    # transformers engine: auto = bfloat16 where the hardware has it (CUDA with bf16, a CPU with AMX / AVX512-BF16)
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    script: Literal["replay", "arithmetic"] | None = None  # scripted
    replay_from: str | None = None
    latency_s: float = Field(0.0, ge=0)
    source: str | None = None  # provenance tag for the trajectories, e.g. "regenerated:nat-smollm2-ckpt"

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in CLIENT_KINDS and value not in ENGINES:
            raise ValueError(f"unknown policy kind {value!r}; choose from {', '.join([*CLIENT_KINDS, *ENGINES])}")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> PolicyConfig:
        if self.kind == "openai" and not (self.base_url and self.model):
            raise ValueError("policy kind 'openai' needs base_url and model")
        refuse_credentials("base_url", self.base_url, f"the key belongs in the environment variable {self.api_key_env}")
        if self.kind in ENGINES and not self.model:
            raise ValueError(f"policy kind {self.kind!r} needs model (a model folder or a prepared model name)")
        if self.kind == "scripted" and self.script is None:
            raise ValueError("policy kind 'scripted' needs script (replay or arithmetic)")
        if self.script == "replay" and not self.replay_from:
            raise ValueError("script 'replay' needs replay_from (a trajectories dataset)")
        return self


class RolloutConfig(StrictModel):
    task: str
    split: str = "train"
    questions: str | None = None  # a question file instead of the task's split file (or one of the data folder)
    offset: int = Field(0, ge=0)
    limit: int | None = Field(None, gt=0)
    template: str = "one-shot"  # prompt template; zero-shot-target-aware for a NAT-trained policy
    prompts: str | None = None  # prompt templates file (default: the task's)
    temperatures: list[float] = Field(default_factory=lambda: [0.2, 0.5, 0.7], min_length=1)
    samples: int = Field(1, ge=1)  # per question and temperature
    max_turns: int = Field(6, ge=1)
    env_workers: PoolConfig = PoolConfig(min=1, max=2)
    episodes_per_worker: int = Field(64, ge=1)  # concurrent episodes in one env-worker actor
    batch_size: int = Field(4, ge=1)  # episodes per Ray Data batch
    max_episode_attempts: int = Field(2, ge=1)  # an episode lost to infrastructure runs again, up to this
    out: str | None = None  # default: <out>/trajectories
    flush_every: int = Field(256, ge=1)  # trajectories per Parquet part


class EvalConfig(StrictModel):
    """Evaluation as the paper ran it: each test set, temperature 0.2, one sample, up to 6 turns, the correct hint for
    a NAT-trained policy (``template: auto``)."""

    datasets: list[str] = Field(min_length=1)  # gsm8k, asdiv, svamp, multiarith, hotpotqa, strategyqa
    limit: int | None = Field(None, gt=0)  # first N questions of each set
    offset: int = Field(0, ge=0)
    questions: dict[str, str] = Field(default_factory=dict)  # data set -> a questions file replacing its test split
    template: str = "auto"  # auto: the NAT hint of the checkpoint's training template, else zero-shot
    # the hint a NAT template's question carries: the correct one (the paper's inference), or the incorrect one, to
    # measure whether the model conditions on its hint (a NAT model that ignores it answers as well under either)
    hint: Literal["correct", "incorrect"] = "correct"
    temperature: float = Field(0.2, ge=0)
    samples: int = Field(1, ge=1)
    max_turns: int = Field(6, ge=1)
    out: str | None = None  # default: <out>/eval
    env_workers: PoolConfig = PoolConfig(min=1, max=2)
    episodes_per_worker: int = Field(64, ge=1)
    batch_size: int = Field(4, ge=1)
    max_episode_attempts: int = Field(2, ge=1)
    flush_every: int = Field(256, ge=1)
    # the transformers engine decodes an eval in float32 whatever policy.dtype's auto picks: then a rerun gives the
    # same transcripts whatever else shares the engine's batches (bf16 rounds differently with its neighbours and
    # repeats ~70% of greedy episodes; docs/benchmarks.md), at ~1.4x the eval time where the CPU has bf16 (none
    # where it has not: auto is float32 there). false: the policy's own dtype, faster and not repeatable
    repeatable: bool = True

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, value: list[str]) -> list[str]:
        from nat_ray.tasks import TASKS, get_task

        names = []
        for i, name in enumerate(value):
            try:
                names.append(get_task(name).name)
            except InputError:
                raise ValueError(f"item {i}: unknown data set {name!r}; choose from {', '.join(TASKS)}") from None
        if len(set(names)) != len(names):
            raise ValueError(f"a data set is listed twice: {value}")
        return names

    @model_validator(mode="after")
    def _questions_for_listed_sets(self) -> EvalConfig:
        from nat_ray.tasks import get_task

        for name in self.questions:
            try:
                known = get_task(name).name in self.datasets
            except InputError:
                known = False
            if not known:
                raise ValueError(f"questions: {name!r} is not one of eval.datasets {self.datasets}")
        return self


class RunConfig(StrictModel):
    out: str = "runs/default"
    # a pyarrow.fs URI (s3://, gs://, file://) the pipeline mirrors `out` to, stage by stage (pipeline/mirror.py)
    storage: str | None = None
    data_dir: str | None = None
    ray_address: str | None = None  # default: $RAY_ADDRESS, else an embedded local cluster
    seed: int = 0  # seeds every sampled reply of rollouts and evals, per episode (nat_ray.episode.episode_seed)
    rollout: RolloutConfig | None = None
    policy: PolicyConfig | None = None
    tools: ToolsConfig = ToolsConfig()
    train: TrainConfig | None = None
    eval: EvalConfig | None = None
    # the pipeline (nat-ray pipeline): where trajectories come from, the default training set, the comparison
    collect: CollectConfig | None = None
    build: BuildStageConfig | None = None
    study: StudyConfig | None = None
    # the engine that serves the pipeline's own models (eval, regeneration) when `policy` is an endpoint (the teacher);
    # its `model` is replaced by each model. Default: `policy` when it is an engine, else a transformers engine.
    engine: PolicyConfig | None = None
    tracking: TrackingConfig = TrackingConfig()  # the pipeline's experiment tracker (default: none)

    @model_validator(mode="after")
    def _outputs_are_paths(self) -> RunConfig:
        # every writer works on local (or mounted shared) paths: a URI would silently become a folder named "s3:"
        outs = {"out": self.out}
        outs |= {f"{n}.out": getattr(getattr(self, n), "out", None) for n in ("rollout", "train", "eval")}
        for name, value in outs.items():
            if value and "://" in value:
                raise ValueError(
                    f"{name}: {value!r} is a URI; outputs need a file-system path (mount the bucket, or use NFS / "
                    "EFS), or set `storage:` to mirror the run there"
                )
        if self.storage is not None:
            if "://" not in self.storage:
                raise ValueError(f"storage: {self.storage!r} is not a URI (s3://bucket/path, gs://..., file:///path)")
            refuse_credentials("storage", self.storage, "give them in the environment instead (AWS_ACCESS_KEY_ID / "
                               "AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS)")  # fmt: skip
        return self

    # Each stage reads its sections through these: present and typed, or one clear error naming the section.
    def _section(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise InputError(f"config: this command needs the {name!r} section")
        return value

    @property
    def train_section(self) -> TrainConfig:
        return self._section("train")

    @property
    def eval_section(self) -> EvalConfig:
        return self._section("eval")

    @property
    def rollout_section(self) -> RolloutConfig:
        return self._section("rollout")

    @property
    def policy_section(self) -> PolicyConfig:
        return self._section("policy")

    def checkpoint_dir(self) -> Path:
        return Path(self.train_section.out or Path(self.out) / "checkpoint")

    def search_cache_path(self) -> Path | None:
        search = self.tools.search
        if search is None or not search.use_cache:
            return None
        return Path(search.cache or Path(self.out) / "search_cache.jsonl")

    def eval_dir(self) -> Path:
        return Path(self.eval_section.out or Path(self.out) / "eval")

    def trajectories_dir(self) -> Path:
        return Path(self.rollout_section.out or Path(self.out) / "trajectories")


def _set(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise InputError(f"override {dotted}: {k} is not a section")
        node = child
    node[keys[-1]] = value


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The config class whose fields the location's last key is checked against (``("train", "x")`` -> TrainConfig)."""
    model: type[BaseModel] | None = RunConfig
    for part in loc[:-1]:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = next(_models_in(model.model_fields[part].annotation), None)
    return model


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)


def _yaml_line(text: str, loc: tuple) -> int | None:
    """The 1-based line of the key at ``loc`` in a YAML text, where it is there."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            return line
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
        if match is None:
            return line
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def _explain(exc: ValidationError, path: str | Path | None, text: str, overridden: set[str]) -> str:
    """One line: where the bad key came from (file and line, or the command line), what is wrong, the nearest key."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields) if model else [], n=1, cutoff=0.6)
        msg = "unknown key" + (f" (did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?)" if close else "")
    from_cli = any(dotted == k or dotted.startswith(k + ".") for k in overridden)
    if from_cli or path is None:
        return f"command-line override {dotted}: {msg}"
    line = _yaml_line(text, loc)
    return f"{path}{f':{line}' if line else ''}: {dotted or '(top level)'}: {msg}"


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:  # type: ignore[assignment]
    tree: dict = {}
    text = ""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{path}: cannot read config: {exc}") from None
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise InputError(f"{path}{line}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(tree, dict):
            raise InputError(f"{path}: a config is a mapping of sections")
    overridden: set[str] = set()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set(tree, key.strip(), value)
        overridden.add(key.strip())
    try:
        cfg = RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise InputError(_explain(exc, path, text, overridden)) from None
    _refuse_relative_out_in_a_job(cfg)
    return cfg


def _refuse_relative_out_in_a_job(cfg: RunConfig) -> None:
    """In a job submitted with ``--working-dir``, the current folder is Ray's temporary copy of it, removed with the
    job: a relative ``out`` would be written there and lost."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw or Path(cfg.out).is_absolute():
        return
    try:
        working_dir = (json.loads(raw).get("runtime_env") or {}).get("working_dir")
    except (ValueError, AttributeError):
        return
    if working_dir:
        raise InputError(
            f"out: {cfg.out!r} is relative, and in a Ray job with a working dir it would be written into the job's "
            "temporary copy of that folder and lost: give an absolute path on storage every node shares"
        )


def dump_config(config: RunConfig) -> dict:
    return config.model_dump(mode="json")
