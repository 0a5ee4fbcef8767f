"""`nat-ray data prepare`: the pinned public files fetched over HTTP (a local server stands in for GitHub), checked
against their sha256, a bad one refused with nothing half-written, a rerun fetching only what is missing; `--from`."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nat_ray.data_sources import SOURCES, prepare
from nat_ray.errors import InputError
from tests.conftest import run_cli


@pytest.fixture
def mirror(tmp_path: Path, data_dir: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """A local HTTP server holding every table file at its URL's path; the paths it was asked for."""
    root = tmp_path / "mirror"
    for s in SOURCES.values():
        for f in s.files:
            target = root / f.url.split("://", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data_dir / f.path, target)
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/", asked
    server.shutdown()


def _opener(base: str):
    return lambda url: urllib.request.urlopen(base + url.split("://", 1)[1], timeout=10)


def test_download_refuses_a_bad_checksum_then_resumes_with_what_is_missing(tmp_path: Path, mirror) -> None:
    root, base, asked = mirror
    dest = tmp_path / "data"
    files = SOURCES["gsm8k"].files
    bad = root / files[1].url.split("://", 1)[1]
    good = bad.read_bytes()
    bad.write_bytes(good[:-10] + b"corrupted!")
    with pytest.raises(InputError) as exc:
        prepare(["gsm8k"], dest, opener=_opener(base), log=lambda _: None)
    assert str(exc.value).startswith("gsm8k/test.jsonl: sha256 ") and "nothing was kept" in str(exc.value)
    assert (dest / files[0].path).is_file()  # fetched before the bad one, and kept
    assert not (dest / files[1].path).exists() and not list(dest.rglob("*.part"))

    bad.write_bytes(good)
    asked.clear()
    counts = prepare(["gsm8k"], dest, opener=_opener(base), log=lambda _: None)
    assert counts == {"present": 1, "fetched": 2}
    assert [p.rsplit("/", 1)[1] for p in asked] == ["test.jsonl", "LICENSE"]
    asked.clear()
    assert prepare(["gsm8k"], dest, opener=_opener(base), log=lambda _: None) == {"present": 3, "fetched": 0}
    assert asked == []


def test_every_file_of_the_table_comes_from_its_url_with_its_checksum(tmp_path: Path, mirror) -> None:
    _, base, _ = mirror
    counts = prepare([], tmp_path / "data", opener=_opener(base), log=lambda _: None)
    assert counts["fetched"] == sum(len(s.files) for s in SOURCES.values()) and counts["present"] == 0


def test_cli_from_a_local_folder_and_its_errors(tmp_path: Path, data_dir: Path) -> None:
    dest = tmp_path / "data"
    r = run_cli("data", "prepare", "nat", "--from", str(data_dir), "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"data_dir": str(dest), "present": 0, "fetched": 13}
    r = run_cli("data", "prepare", "nat", "--from", str(data_dir), "--dest", str(dest))
    assert json.loads(r.stdout.strip().splitlines()[-1])["present"] == 13

    partial = tmp_path / "partial"
    shutil.copytree(data_dir / "gsm8k", partial / "gsm8k")
    (partial / "gsm8k/LICENSE").unlink()
    r = run_cli("data", "prepare", "gsm8k", "--from", str(partial), "--dest", str(tmp_path / "d2"))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith(
        "gsm8k/LICENSE: missing (the --from folder holds no such file)"
    )
    r = run_cli("data", "prepare", "squad", "--dest", str(tmp_path / "d3"))
    assert r.returncode == 2 and "unknown data set(s) squad" in r.stderr


def test_a_missing_data_file_says_which_set_to_prepare(tmp_path: Path) -> None:
    from nat_ray.tasks import get_task, task_file

    (tmp_path / "nat").mkdir()
    with pytest.raises(InputError) as exc:
        task_file(get_task("gsm8k"), "train", tmp_path)
    assert str(exc.value) == (f"{tmp_path}/gsm8k/train.jsonl: missing from the data folder: run `nat-ray data "
                              "prepare gsm8k` (or pass --data-dir / set NAT_RAY_DATA_DIR)")  # fmt: skip


def test_with_no_data_prepared_a_command_says_to_prepare_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nat_ray.tasks import resolve_data_dir

    monkeypatch.delenv("NAT_RAY_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(InputError, match=r"holds no prepared data; run `nat-ray data prepare`"):
        resolve_data_dir()
    prepared = tmp_path / "cache/nat_ray/data"
    (prepared / "nat").mkdir(parents=True)  # where `data prepare` puts it by default: found without a setting
    assert resolve_data_dir() == prepared
