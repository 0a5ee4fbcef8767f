from __future__ import annotations

import json
from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    stages = {
        "rollout": cfg.rollout is not None and cfg.policy is not None,
        "train": cfg.train is not None,
        "eval": cfg.eval is not None and cfg.policy is not None,
        "pipeline": cfg.collect is not None,
    }
    assert any(stages.values()), f"{path.name} configures no stage"
    if stages["pipeline"]:
        from nat_ray.pipeline.driver import validate

        assert validate(cfg)
    elif stages["eval"]:  # each data set's questions and template resolve
        from nat_ray.evaluation.plan import plan_eval

        template = "zero-shot" if cfg.eval.template == "auto" else cfg.eval.template
        assert all(p.specs for p in plan_eval(cfg, template, None))


def test_shipped_configs_exist() -> None:
    assert len(SHIPPED) >= 3


def test_overrides_are_yaml_values() -> None:
    cfg = load_config(
        REPO / "configs/ci_rollout_gsm8k_scripted.yaml",
        ["rollout.limit=3", "rollout.temperatures=[0.1, 0.9]", "rollout.env_workers={min: 2, max: 4}", "out=/tmp/x"],
    )
    assert cfg.rollout.limit == 3 and cfg.rollout.temperatures == [0.1, 0.9]
    assert (cfg.rollout.env_workers.min, cfg.rollout.env_workers.max) == (2, 4)
    assert str(cfg.trajectories_dir()) == "/tmp/x/trajectories"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rollout.bogus=1"], "rollout.bogus: unknown key"),
        (["policy.kind=gpt"], "policy.kind"),
        (["rollout.samples=0"], "rollout.samples"),
        (["rollout.env_workers={min: 3, max: 2}"], "below min"),
        (["policy.kind=openai"], "needs base_url"),
        (["policy.script=null"], "needs script"),
        (["nonsense"], "expected key=value"),
        (["out=s3://bucket/runs/x"], "out: 's3://bucket/runs/x' is a URI"),
        (["rollout.out=gs://b/t"], "rollout.out: 'gs://b/t' is a URI"),
        (["storage=runs/mirror"], "storage: 'runs/mirror' is not a URI"),
        (["storage=s3://AKIA:hunter2@bucket/run"], "storage: the URL carries a credential \\(user-info\\)"),
        (
            ["policy.kind=openai", "policy.model=m", "policy.base_url=https://u:hunter2@api.example.com/v1"],
            "base_url: the URL carries a credential \\(user-info\\); the key belongs in the environment variable",
        ),
        (
            ["policy.kind=openai", "policy.model=m", "policy.base_url=https://api.example.com/v1?api_key=hunter2"],
            "base_url: the URL carries a credential \\(query parameter 'api_key'\\)",
        ),
        (
            ["tracking={kind: mlflow, uri: 'https://mlflow.example.com/?token=hunter2'}"],
            "tracking: Value error, uri: the URL carries",
        ),
        (
            ["tools.search={kind: serper, serper: {url: 'https://s.example.com/search?apiKey=x'}}"],
            "url: the URL carr",
        ),
    ],
)
def test_bad_config_names_the_field(overrides: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_config(REPO / "configs/ci_rollout_gsm8k_scripted.yaml", overrides)


def test_batch_sizes_must_divide() -> None:
    with pytest.raises(InputError, match="not a multiple of micro_batch_size x num_workers"):
        load_config(REPO / "configs/train_smollm2_strategyqa_nat.yaml", ["train.global_batch_size=31"])


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("out: x\nrollout:\n  task: gsm8k\n  limit: [1, 2\n")
    with pytest.raises(InputError, match=r"c\.yaml:\d+: malformed YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ("{kind: local}", "needs index"),
        ("{kind: replay}", "needs replay_from"),
        ("{kind: bing}", "tools.search.kind"),
        ("{kind: serper, embed_keep: 12}", r"embed_keep \(12\) is above candidates \(10\)"),
        ("{kind: serper, keep: 6}", r"keep \(6\) is above the passages left by the stage before \(5\)"),
        ("{kind: serper, embed_model: null, keep: 11}", r"keep \(11\) is above .* \(10\)"),
        ("{kind: serper, serper: {api_key: sk-123}}", "tools.search.serper.api_key: unknown key"),
        ("{kind: local, index: {path: x, sources: [wikipedia]}}", "tools.search.index.sources"),
    ],
)
def test_bad_search_config_names_the_field(search: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_config(None, [f"tools.search={search}"])


def test_search_cache_defaults_beside_the_output() -> None:
    cfg = load_config(REPO / "configs/rollout_hotpotqa_local.yaml", ["out=/tmp/r", "tools.search.cache=null"])
    assert str(cfg.search_cache_path()) == "/tmp/r/search_cache.jsonl"
    assert load_config(None, ["tools.search={kind: serper, use_cache: false}"]).search_cache_path() is None


def test_unknown_key_from_the_command_line_suggests_the_nearest() -> None:
    with pytest.raises(InputError) as err:
        load_config(REPO / "configs/train_smollm2_strategyqa_nat.yaml", ["train.max_step=2"])
    assert str(err.value) == "command-line override train.max_step: unknown key (did you mean train.max_steps?)"


def test_unknown_key_in_the_file_names_file_line_and_the_nearest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("out: x\ntrain:\n  model: m\n  data: d\n  micro_batch: 2\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:5: train.micro_batch: unknown key (did you mean train.micro_batch_size?)"
    path.write_text("out: x\ntrain:\n  model: m\n  data: d\n  zzz: 2\n")
    with pytest.raises(InputError, match=r"c\.yaml:5: train\.zzz: unknown key$"):
        load_config(path)


def test_a_relative_out_is_refused_inside_a_ray_job_with_a_working_dir(monkeypatch) -> None:
    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))
    with pytest.raises(InputError, match="out: 'runs/ci-scripted' is relative, and in a Ray job"):
        load_config(REPO / "configs/ci_rollout_gsm8k_scripted.yaml")
    assert load_config(REPO / "configs/ci_rollout_gsm8k_scripted.yaml", ["out=/shared/runs/x"]).out == "/shared/runs/x"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}}))  # no working dir: cwd is real
    assert load_config(REPO / "configs/ci_rollout_gsm8k_scripted.yaml").out == "runs/ci-scripted"


def test_train_bf16_takes_yamls_bare_on_and_off() -> None:
    # YAML reads `off` / `on` as booleans; the key still means what was written, and anything else is refused
    cfg = REPO / "configs/train_smollm2_strategyqa_nat.yaml"
    assert [load_config(cfg, [f"train.bf16={v}"]).train.bf16 for v in ("off", "on", "auto")] == ["off", "on", "auto"]
    with pytest.raises(InputError, match=r"train\.bf16"):
        load_config(cfg, ["train.bf16=maybe"])
