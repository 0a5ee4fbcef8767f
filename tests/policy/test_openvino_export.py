"""The project's own OpenVINO export (``nat_ray.policy.openvino_export``): what it writes, that the engine's cache
exports a checkpoint once and again when its files change, and the CLI's one-line errors. That GenAI's continuous
batching runs the export, with greedy replies equal to float32 ``generate``, is tests/policy/test_openvino_engine.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_the_export_holds_a_stateful_model_its_tokenizers_and_a_record(smollm2: Path, smollm2_openvino: Path) -> None:
    import openvino as ov

    from nat_ray.policy.openvino_export import EXPORT_FORMAT, EXPORT_RECORD, export_key

    for name in ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml",
                 "tokenizer.json", "config.json"):  # fmt: skip
        assert (smollm2_openvino / name).is_file(), name
    record = json.loads((smollm2_openvino / EXPORT_RECORD).read_text())
    assert record["format"] == EXPORT_FORMAT and record["key"] == export_key(smollm2)
    assert record["source"] == str(smollm2.resolve()) and record["versions"]["transformers"].startswith("5.")
    model = ov.Core().read_model(smollm2_openvino / "openvino_model.xml")
    inputs = {p.get_any_name() for p in model.inputs}
    assert inputs == {"input_ids", "attention_mask", "position_ids", "beam_idx"}  # the past is state, not inputs
    ops = [op.get_type_name() for op in model.get_ordered_ops()]
    layers = json.loads((smollm2 / "config.json").read_text())["num_hidden_layers"]
    assert ops.count("ReadValue") == ops.count("Assign") == 2 * layers
    assert ops.count("ScaledDotProductAttention") == layers  # what GenAI rewrites into paged attention
    # every state has an initial value (zeros sized by the batch): GenAI's rewrite matches only such a state read
    assert all(len(op.inputs()) == 1 for op in model.get_ordered_ops() if op.get_type_name() == "ReadValue")
    assert model.get_output_element_type(0) == ov.Type.f32
    # GenAI's default for its KV cache, as in optimum-intel's exports (policy.dtype float32 overrides it)
    assert model.get_rt_info(["runtime_options", "KV_CACHE_PRECISION"]).astype(str) == "f16"


def test_a_checkpoint_is_exported_once_and_again_when_its_files_change(
    tmp_path: Path, smollm2: Path, smollm2_openvino: Path
) -> None:
    from nat_ray.policy.openvino_export import EXPORT_RECORD, export_key, openvino_model_dir

    record = smollm2_openvino / EXPORT_RECORD
    before = record.stat().st_mtime_ns
    assert openvino_model_dir(smollm2) == smollm2_openvino and record.stat().st_mtime_ns == before  # found, not redone
    assert openvino_model_dir(smollm2_openvino) == smollm2_openvino  # an IR folder is used as it is
    copy = tmp_path / "ckpt"
    shutil.copytree(smollm2, copy)
    key = export_key(copy)
    assert key != export_key(smollm2)  # another folder: another export
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "nat_ray_note": "retrained"}))
    assert export_key(copy) != key  # the same folder with other files (a checkpoint written again)


def test_export_errors_are_one_line(tmp_path: Path, smollm2_openvino: Path) -> None:
    r = run_cli("models", "export-openvino", str(tmp_path / "missing"), "--out", str(tmp_path / "ir"))
    assert r.returncode == 2 and "does not exist" in r.stderr.strip().splitlines()[-1], r.stderr
    r = run_cli("models", "export-openvino", str(smollm2_openvino), "--out", str(tmp_path / "ir"))
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "already an OpenVINO IR folder" in last and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "ir").exists()


def test_a_new_export_of_a_folder_removes_its_earlier_ones(tmp_path: Path) -> None:
    from nat_ray.policy.openvino_export import EXPORT_RECORD, _drop_superseded

    src, elsewhere = tmp_path / "runs/models/nat", tmp_path / "runs/models/vanilla"
    exports = tmp_path / "exports"
    for name, source in (("nat-new", src), ("nat-old", src), ("nat-other", elsewhere), ("vanilla-a", elsewhere)):
        (exports / name).mkdir(parents=True)
        (exports / name / EXPORT_RECORD).write_text(json.dumps({"source": str(source.resolve())}))
    _drop_superseded(exports / "nat-new", src)
    assert sorted(p.name for p in exports.iterdir()) == ["nat-new", "nat-other", "vanilla-a"]
