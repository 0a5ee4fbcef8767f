"""Layers point one way (docs/design.md): core logic <- actors <- stage drivers <- the CLI. A module never imports
from a layer above its own, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = {"nat_ray.cli", "nat_ray.cli_setup", "nat_ray.cli_tools"}
DRIVERS_PREFIX = ("nat_ray.pipeline",)
DRIVERS = {
    "nat_ray.rollout.driver",
    "nat_ray.rollout.stream",  # the stream of env-worker actors, shared by the rollout and eval drivers
    "nat_ray.evaluation.driver",
    "nat_ray.training.trainer",
    "nat_ray.chat",
    "nat_ray.ray_init",
}


def layer(module: str) -> int:
    if module in CLI:
        return 3
    if module in DRIVERS or module.startswith(DRIVERS_PREFIX):
        return 2
    if module == "actors" or module.startswith("actors."):
        return 1
    return 0


def _modules() -> dict[str, Path]:
    out = {}
    for path in [*(REPO / "nat_ray").rglob("*.py"), *(REPO / "actors").rglob("*.py")]:
        out[".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = path
    return out


def test_no_module_imports_from_a_layer_above_it() -> None:
    modules = _modules()
    assert layer("nat_ray.config") == 0 and layer("actors.engine") == 1 and layer("nat_ray.pipeline.driver") == 2
    upward = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            upward += [f"{name} imports {t}" for t in targets if t in modules and layer(t) > layer(name)]
    assert upward == []


RUN_FILE_NAMES = {"_stage.json", "_manifest.json", "nat_ray_train.json", "metrics.json", "metrics.jsonl", "run.json",
                  "table.md", "mlflow.db", "mlartifacts"}  # fmt: skip


def test_no_run_folder_file_name_is_spelled_outside_the_records_module() -> None:
    spelled = []
    for name, path in _modules().items():
        if name == "nat_ray.records":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            value = node.value if isinstance(node, ast.Constant) else None
            if not isinstance(value, str):
                continue
            # a string that is such a name, or a path ending in one (prose that mentions one does not count)
            if value.rsplit("/", 1)[-1] in RUN_FILE_NAMES or value.endswith(".manifest.json"):
                spelled.append(f"{name}: {value!r}")
    assert spelled == []
