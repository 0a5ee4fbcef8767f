"""Study expansion and the pipeline's checks before any stage runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.config_sections import BuildStageConfig, StudyConfig
from nat_ray.errors import InputError
from nat_ray.pipeline.driver import validate
from nat_ray.pipeline.variants import check_counts, expand

REPO = Path(__file__).resolve().parents[2]


def test_modes_times_negatives_share_one_vanilla() -> None:
    vs = expand(BuildStageConfig(pos_num=250), StudyConfig(modes=["vanilla", "nut", "nat"], negatives=[0, 250, 500]), 7)
    # every mode at a point before the next point: a sweep stopped part way has its first points complete
    assert [v.name for v in vs] == [
        "vanilla",
        "nut-neg0",
        "nat-neg0",
        "nut-neg250",
        "nat-neg250",
        "nut-neg500",
        "nat-neg500",
    ]
    assert next(v for v in vs if v.name == "vanilla").neg_num == 0
    assert {v.pos_num for v in vs} == {250} and {v.train_seed for v in vs} == {7}


def test_positives_are_the_learning_curves_axis() -> None:
    study = StudyConfig(modes=["vanilla", "nat"], positives=[250, 1000, "all"], negatives=[250])
    vs = expand(BuildStageConfig(pos_num=8), study, 0)
    assert [(v.name, v.pos_num, v.neg_num) for v in vs] == [
        ("vanilla-pos250", 250, 0),
        ("nat-pos250-neg250", 250, 250),
        ("vanilla-pos1000", 1000, 0),
        ("nat-pos1000-neg250", 1000, 250),
        ("vanilla-posall", "all", 0),
        ("nat-posall-neg250", "all", 250),
    ]
    with pytest.raises(InputError, match=r"build\.pos_num: 1000 positives asked"):
        check_counts(vs, positives=400, negatives=400, where="the trajectories")
    with pytest.raises(ValueError):
        StudyConfig(positives=[0])


def test_templates_and_seeds_are_axes_too() -> None:
    study = StudyConfig(
        modes=["nat"], templates=["zero-shot-target-aware", "zero-shot-target-aware-prefix-AB"], seeds=[1, 2]
    )
    vs = expand(BuildStageConfig(), study, 0)
    assert [v.name for v in vs] == ["nat-seed1", "nat-prefix-AB-seed1", "nat-seed2", "nat-prefix-AB-seed2"]
    assert [v.template for v in vs] == [None, "zero-shot-target-aware-prefix-AB"] * 2
    assert [v.train_seed for v in vs] == [1, 1, 2, 2]
    assert [v.name for v in expand(BuildStageConfig(mode="nut"), None, 0)] == ["nut"]


def test_templates_are_the_hint_ablation_of_nat_only() -> None:
    # vanilla and NUT have no hints: one variant each, as in the study without the ablation, whose default NAT
    # (template None: the same set and stage hash) keeps its name
    templates = ["zero-shot-target-aware", "zero-shot-target-aware-prefix-AB", "zero-shot-target-aware-2"]
    study = StudyConfig(modes=["vanilla", "nut", "nat"], negative_source=["near-miss"], templates=templates)
    vs = expand(BuildStageConfig(), study, 0)
    assert [(v.name, v.template) for v in vs] == [
        ("vanilla", None),
        ("nut-near-miss", None),
        ("nat-near-miss", None),
        ("nat-near-miss-prefix-AB", "zero-shot-target-aware-prefix-AB"),
        ("nat-near-miss-2", "zero-shot-target-aware-2"),
    ]
    without = expand(BuildStageConfig(), study.model_copy(update={"templates": None}), 0)
    assert [(v.name, v.template) for v in without] == [(v.name, v.template) for v in vs[:3]]
    clash = study.model_copy(update={"templates": ["zero-shot-target-aware-2", "2"]})
    with pytest.raises(
        InputError, match=r"study\.templates: 'zero-shot-target-aware-2' and '2' both name nat-near-miss-2"
    ):
        expand(BuildStageConfig(), clash, 0)


def test_controls_add_a_matched_twin_per_variant_named_before_the_seed() -> None:
    study = StudyConfig(modes=["vanilla", "nat"], seeds=[1, 2], controls=["steps"])
    vs = expand(BuildStageConfig(), study, 0)
    # each seed's replication whole before the next seed's
    assert [v.name for v in vs] == ["vanilla-seed1", "nat-seed1", "vanilla-steps-seed1", "nat-steps-seed1",
                                    "vanilla-seed2", "nat-seed2", "vanilla-steps-seed2", "nat-steps-seed2"]  # fmt: skip
    control = vs[2]
    assert (control.match, control.twin, control.train_seed, control.mode) == ("steps", "vanilla-seed1", 1, "vanilla")
    assert [v.name for v in expand(BuildStageConfig(), StudyConfig(controls=["tokens"]), 0)] == ["nat", "nat-tokens"]
    with pytest.raises(InputError, match=r"study.controls: the variants are already matched \(study.match: steps\)"):
        expand(BuildStageConfig(), StudyConfig(controls=["steps"], match="steps"), 0)


def test_negative_source_regenerated_variants_come_after_the_model_that_regenerates() -> None:
    study = StudyConfig(modes=["nat", "vanilla", "nut"], negative_source=["regenerated", "imported"])
    vs = expand(BuildStageConfig(pos_num=10, neg_num=10), study, 0)
    assert [v.name for v in vs] == ["vanilla", "nat-imported", "nut-imported", "nat-regenerated", "nut-regenerated"]
    assert [v.negative_source for v in vs] == ["imported"] * 3 + ["regenerated"] * 2
    check_counts(vs, positives=10, negatives=10, where="traj")  # regenerated negatives are checked when they exist
    check_counts(vs, positives=0, negatives=10, where="regen", source="regenerated")
    with pytest.raises(InputError, match=r"study.negatives: 10 negatives asked \(nat-regenerated\) but regen has 9: m"):
        check_counts(vs, positives=0, negatives=9, where="regen", source="regenerated", hint=": more")
    with pytest.raises(InputError, match=r"study.regenerate_from: 'nat' is not a variant trained on the collected"):
        study = StudyConfig(modes=["nat"], negative_source=["regenerated"], regenerate_from="nat")
        expand(BuildStageConfig(), study, 0)
    with pytest.raises(InputError, match=r"regenerate_from: 'vanilla' .*\(the study has: \)"):
        expand(BuildStageConfig(), StudyConfig(modes=["nat"], negative_source=["regenerated"]), 0)
    with pytest.raises(InputError, match=r"regenerate_from: 'vanilla-steps' .*\(the study has: vanilla\)"):
        study = StudyConfig(modes=["vanilla", "nat"], negative_source=["regenerated"], controls=["steps"])
        expand(BuildStageConfig(), study.model_copy(update={"regenerate_from": "vanilla-steps"}), 0)  # trains last


def test_counts_above_what_exists_name_the_field() -> None:
    vs = expand(BuildStageConfig(pos_num=10), StudyConfig(modes=["nat"], negatives=[5, 50]), 0)
    check_counts(vs, positives=10, negatives=50, where="traj")
    with pytest.raises(InputError, match=r"study.negatives: 50 negatives asked \(nat-neg50\) but traj has 49"):
        check_counts(vs, positives=10, negatives=49, where="traj")
    with pytest.raises(InputError, match=r"build\.pos_num: 10 positives asked"):
        check_counts(vs, positives=9, negatives=50, where="traj")


def test_bad_pipeline_configs_fail_before_any_stage(tmp_path: Path) -> None:
    config = REPO / "configs/ci_pipeline.yaml"
    with pytest.raises(InputError, match="nat-graded needs a task with F1"):
        validate(load_config(config, [f"out={tmp_path}", "study.modes=[nat, nat-graded]"]))
    with pytest.raises(InputError, match="unknown template 'no-such'"):
        validate(load_config(config, [f"out={tmp_path}", "study.templates=[no-such]"]))
    with pytest.raises(InputError, match="collect kind 'import' needs questions and files"):
        load_config(config, ["collect.files=[]"])
    with pytest.raises(InputError, match=r"study\.modes"):
        load_config(config, ["study.modes=[]"])
    with pytest.raises(InputError, match=r"study.negative_source: 'regenerated' needs the 'rollout' section"):
        validate(load_config(config, [f"out={tmp_path}", "study.negative_source=[imported, regenerated]"]))
    with pytest.raises(InputError, match=r"study\.negative_source"):
        load_config(config, ["study.negative_source=[made-up]"])
    with pytest.raises(InputError, match=r"rollout.task: 'gsm8k', but collect.task is 'strategyqa'"):
        validate(load_config(config, [f"out={tmp_path}", "rollout={task: gsm8k}"]))
    with pytest.raises(InputError, match=r"study.train_by_mode.dpo.learning_rate: Extra inputs are not permitted"):
        validate(load_config(config, [f"out={tmp_path}", "study.modes=[vanilla, dpo]",
                                      "study.train_by_mode={dpo: {learning_rate: 1.0e-6}}"]))  # fmt: skip
    assert not any(tmp_path.iterdir())


def test_train_by_mode_sets_a_modes_training_only() -> None:
    from nat_ray.config import TrainConfig
    from nat_ray.pipeline.sets import mode_train

    base = TrainConfig(model="m", lr=1e-4)
    by_mode = {"dpo": {"lr": 1e-6, "beta": 0.2}}
    assert mode_train(base, by_mode, "dpo").lr == 1e-6 and mode_train(base, by_mode, "dpo").beta == 0.2
    assert mode_train(base, by_mode, "nat") is base and mode_train(base, None, "dpo") is base


def test_an_out_holding_another_run_is_refused_before_any_stage(tmp_path: Path) -> None:
    from nat_ray.pipeline.driver import run_pipeline
    from nat_ray.records import STAGE_FILE, StageManifest

    (tmp_path / "trajectories").mkdir()
    other = StageManifest(stage="collect", config_hash="0123456789abcdef", complete=True)
    (tmp_path / "trajectories" / STAGE_FILE).write_text(other.model_dump_json())
    cfg = load_config(REPO / "configs/ci_pipeline.yaml", [f"out={tmp_path}"])
    with pytest.raises(InputError, match=r"out: .* holds a run whose trajectories were collected with another config"):
        run_pipeline(cfg, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trajectories"]  # nothing was touched


def test_preference_variants_come_after_the_vanilla_model_they_start_from() -> None:
    study = StudyConfig(modes=["kto", "nat", "dpo", "vanilla"], seeds=[1, 2], controls=["steps"])
    vs = expand(BuildStageConfig(), study, 0)
    names = [v.name for v in vs]
    assert names.index("vanilla-seed1") < names.index("dpo-seed1") < names.index("vanilla-seed2")
    assert names.index("vanilla-seed2") < names.index("kto-seed2") and names[-2:] == ["kto-seed2", "dpo-seed2"]
    assert not any(n.startswith(("dpo-steps", "kto-steps")) for n in names)  # no compute control across objectives
    assert [v.objective for v in vs if v.name.startswith(("kto", "dpo", "nat-seed1"))] == [
        "sft",
        "kto",
        "dpo",
        "kto",
        "dpo",
    ]
    with pytest.raises(InputError, match=r"preference_init: sft, but dpo has no vanilla variant of training seed 0"):
        expand(BuildStageConfig(), StudyConfig(modes=["nat", "dpo"]), 0)
    assert [v.name for v in expand(BuildStageConfig(), StudyConfig(modes=["dpo"], preference_init="base"), 0)] == [
        "dpo"
    ]


def test_rounds_iterate_the_round_mode_variants_named_before_the_seed() -> None:
    study = StudyConfig(modes=["vanilla", "nat"], seeds=[1, 2], rounds=3)
    vs = expand(BuildStageConfig(pos_num=8, neg_num=8), study, 0)
    names = [v.name for v in vs]
    assert names == ["vanilla-seed1", "nat-seed1", "nat-r2-seed1", "nat-r3-seed1", "vanilla-seed2", "nat-seed2",
                     "nat-r2-seed2", "nat-r3-seed2"]  # fmt: skip
    r3 = vs[3]
    assert (r3.round, r3.previous, r3.pos_num, r3.neg_num, r3.train_seed) == (3, "nat-r2-seed1", "all", "all", 1)
    rs = expand(BuildStageConfig(), StudyConfig(modes=["vanilla"], rounds=2, round_mode="vanilla"), 0)
    assert [(v.name, v.neg_num) for v in rs] == [("vanilla", 0), ("vanilla-r2", 0)]  # rejection-sampling FT
    with pytest.raises(InputError, match=r"study.rounds: 2, but no variant has a study.round_mode of \['dpo'\]"):
        expand(BuildStageConfig(), StudyConfig(modes=["nat"], rounds=2, round_mode="dpo"), 0)
    both = expand(BuildStageConfig(), StudyConfig(modes=["vanilla", "nat"], rounds=3, round_mode=["nat", "vanilla"]), 0)
    assert [v.name for v in both] == ["vanilla", "nat", "vanilla-r2", "nat-r2", "vanilla-r3", "nat-r3"]
    assert [(v.previous, v.neg_num) for v in both[2:4]] == [("vanilla", 0), ("nat", "all")]


def test_rounds_need_the_rollout_section(tmp_path: Path) -> None:
    config = REPO / "configs/ci_pipeline.yaml"
    with pytest.raises(InputError, match=r"study.rounds: a later round rolls out .* it needs the 'rollout' section"):
        validate(load_config(config, [f"out={tmp_path}", "study.rounds=2"]))


def test_an_out_whose_data_folder_moved_is_the_same_run(tmp_path: Path) -> None:
    """A run folder copied from another machine: its trajectories were collected from the same files (by content),
    read from another data folder: accepted, not refused."""
    from nat_ray.pipeline.driver import _collect_identity, check_out, validate
    from nat_ray.records import STAGE_FILE, StageManifest

    plan = validate(load_config(REPO / "configs/ci_pipeline.yaml", [f"out={tmp_path}"]))
    view, inputs = _collect_identity(plan)
    elsewhere = {f"/elsewhere/{Path(p).name}": h for p, h in inputs.items()}
    old = StageManifest(stage="collect", config_hash="0123456789abcdef", config=view, inputs=elsewhere, complete=True)
    (tmp_path / "trajectories").mkdir()
    (tmp_path / "trajectories" / STAGE_FILE).write_text(old.model_dump_json())
    check_out(plan, (view, inputs))
    edited = {p: "another content" for p in elsewhere}
    (tmp_path / "trajectories" / STAGE_FILE).write_text(old.model_copy(update={"inputs": edited}).model_dump_json())
    with pytest.raises(InputError, match=r"collected with another config"):
        check_out(plan, (view, inputs))
