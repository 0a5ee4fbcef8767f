"""eval.hint: a NAT template asked under its incorrect hint, refused where a template has none, and kept out of the
pipeline's eval identity at its default."""

from pathlib import Path

import pytest

from nat_ray.config import load_config
from nat_ray.errors import InputError
from nat_ray.evaluation.plan import identity, plan_eval

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs/ci_eval_scripted.yaml"


def _prompt(plans) -> str:
    return plans[0].settings.template.inference_messages("Q?")[-1].content


def test_the_incorrect_hint_replaces_the_correct_one_and_names_the_template_apart(data_dir: Path) -> None:
    name = "zero-shot-target-aware-prefix-AB"
    correct = plan_eval(load_config(CONFIG, [f"eval.template={name}"]), name, None)
    incorrect = plan_eval(load_config(CONFIG, [f"eval.template={name}", "eval.hint=incorrect"]), name, None)
    assert _prompt(correct) == "[A] Question: Q?." and _prompt(incorrect) == "[B] Question: Q?."
    assert incorrect[0].settings.template.name == f"{name}:incorrect-hint"
    cfg = load_config(CONFIG, [f"eval.template={name}"])
    # a resumed eval made under the other hint is refused: the identity differs
    assert identity(cfg, correct[0])["template"] != identity(cfg, incorrect[0])["template"]


def test_a_template_without_an_incorrect_hint_is_refused_by_field(data_dir: Path) -> None:
    cfg = load_config(CONFIG, ["eval.template=zero-shot", "eval.hint=incorrect"])
    why = r"eval.hint: incorrect on gsm8k: .*'zero-shot' has no 'incorrect_question_prompt'"
    with pytest.raises(InputError, match=why):
        plan_eval(cfg, "zero-shot", None)
    with pytest.raises(Exception, match="hint"):
        load_config(CONFIG, ["eval.hint=wrong"])
