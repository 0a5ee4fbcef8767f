"""The data sets nat_ray uses, each file pinned to its public source, and ``nat-ray data prepare``.

    nat-ray data prepare                       # every set, from its public source, into NAT_RAY_DATA_DIR
    nat-ray data prepare nat gsm8k             # some sets
    nat-ray data prepare --from DIR            # from a local copy (offline machines; CI: --from ../shared/data)

One table (:data:`SOURCES`): per file its path in the data folder, the URL of the file at a pinned commit of its
repository, its sha256 and size. A file already present with the right checksum is left alone (a rerun is a no-op,
and an interrupted one fetches only what is missing); a file is written to ``<name>.part`` beside its place, checked,
then renamed, so a wrong checksum or a broken download leaves nothing half-written behind. The files' provenance and
licences: docs/data.md.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nat_ray.errors import InputError
from nat_ray.records import file_hash

NAT = "https://raw.githubusercontent.com/Reason-Wang/NAT/5f2541202a63c5e848e959588c49ed60a161b104"
GSM8K = "https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c"
RPT = "https://raw.githubusercontent.com/megagonlabs/RPT/cf2bc1b1b4edd0318b84179e732ec476c4e20a6e"
MEVE = "https://github.com/nakulbh/Meve-framework/raw/a83b659"  # abbreviated commit: GitHub resolves it


@dataclass(frozen=True)
class DataFile:
    path: str  # inside the data folder
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DataSet:
    name: str
    what: str
    licence: str
    files: tuple[DataFile, ...]


def _nat(path: str, sha: str, size: int) -> DataFile:
    origin = path.replace("nat/dataset/", "data/dataset/", 1).replace("nat/prompts/", "prompts/", 1)
    return DataFile(path, f"{NAT}/{origin}", sha, size)


SOURCES: dict[str, DataSet] = {
    s.name: s
    for s in (
        DataSet(
            "nat",
            "the NAT release (Reason-Wang/NAT): NATInstruct StrategyQA trajectories, the paper's question files "
            "and prompt templates",
            "trajectories and prompts: none stated; StrategyQA, GSM8K, SVAMP: MIT; HotpotQA: CC BY-SA 4.0; "
            "ASDiv: CC BY-NC 4.0; MultiArith: none stated",
            (
                _nat(
                    "nat/dataset/strategyqa/strategyqa_gpt-3.5_positive.json",
                    "d9beafc7afa2184c62566ea468ace01fedf8e307b14731c014cee006126314a2",
                    2234928,
                ),
                _nat(
                    "nat/dataset/strategyqa/strategyqa_gpt-3.5_negative.json",
                    "023e7a9ba3a08acea980fc363d4419a4b9a768cd1a0aacce247838a8a56d7c0f",
                    2811000,
                ),
                _nat(
                    "nat/dataset/strategyqa/train.jsonl",
                    "9a060d57add6a127a6daab60e127685a3c4669518ce660f7efeda710ac9948a1",
                    996275,
                ),
                _nat(
                    "nat/dataset/strategyqa/test_random_500.jsonl",
                    "f1e964a2d903f189d5c815c47455db3772044081e1372d7a79cc28ec46cb5c0a",
                    150470,
                ),
                _nat(
                    "nat/dataset/hotpotqa/train_random_8000.json",
                    "af099020da0e2cdd13ef99cb078f78f4bf3cb279a3bf71c960899ec619f8f4d3",
                    1645181,
                ),
                _nat(
                    "nat/dataset/hotpotqa/dev_random_500.json",
                    "6da48d3fdb6f74e0ac09a353fb0800291c30d839eb531da729d16a75d8075927",
                    96262,
                ),
                _nat(
                    "nat/dataset/gsm8k/test.json",
                    "f96fefe6c37ded04decb4aab2a73c6882425980453cdf16e4d03876ea64b558c",
                    789519,
                ),
                _nat(
                    "nat/dataset/ASDiv/test_one_answer.jsonl",
                    "fc6f0fdb6fce7a8355e4b9dcdc853c614b94f182d272f614de1acb684dcb61c1",
                    415289,
                ),
                _nat(
                    "nat/dataset/SVAMP/test.jsonl",
                    "bd0f1ee44a26f5d28c74c4a221289ab62258b341a3daa3b506883edf6243fb22",
                    211686,
                ),
                _nat(
                    "nat/dataset/MultiArith/test.jsonl",
                    "b09edf437e5f5c49515992fd9b7f859d16d32f1d53851ff87b587496d0614fdf",
                    122944,
                ),
                _nat(
                    "nat/prompts/StrategyQA/StrategyQA_conversation.json",
                    "c83a6c8ccabcb313ee7b828d81f779db6c620801b5e700125c339ce8f5eefc43",
                    8064,
                ),
                _nat(
                    "nat/prompts/gsm8k/gsm8k_conversation.json",
                    "85b53e960abf74a337ad5595cb57b626d39369871a939383724b9cd2d334a351",
                    10075,
                ),
                _nat(
                    "nat/prompts/hotpotqa/hotpotqa_conversation.json",
                    "3962982d01acf32eca8064a5ca746f06d81e075a1b837f5c2f2e54283fd8ac70",
                    22782,
                ),
            ),
        ),
        DataSet(
            "gsm8k",
            "GSM8K (openai/grade-school-math): train and test with calculator annotations",
            "MIT",
            (
                DataFile(
                    "gsm8k/train.jsonl",
                    f"{GSM8K}/grade_school_math/data/train.jsonl",
                    "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
                    4166206,
                ),
                DataFile(
                    "gsm8k/test.jsonl",
                    f"{GSM8K}/grade_school_math/data/test.jsonl",
                    "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
                    749738,
                ),
                DataFile(
                    "gsm8k/LICENSE",
                    f"{GSM8K}/LICENSE",
                    "86bbb73e855821d7c401912fd4bf82e34313e6e3b6fd6f909f2b6cc9e209a53b",
                    1062,
                ),
            ),
        ),
        DataSet(
            "hotpotqa-distractor",
            "HotpotQA dev questions with their 10 context paragraphs (the local search corpus and its questions)",
            "CC BY-SA 4.0",
            (
                DataFile(
                    "hotpotqa_distractor/rpt_train.jsonl",
                    f"{RPT}/data/hotpotqa/train.jsonl",
                    "e587f80176337ff705ca2f9c178f2bd784280b388abf302ad4071c482baa0dfb",
                    1855706,
                ),
                DataFile(
                    "hotpotqa_distractor/rpt_dev.jsonl",
                    f"{RPT}/data/hotpotqa/dev.jsonl",
                    "c6fa5317cc316b65b3c82d441ea641aef4a588b4aaec9377bbd167637d8665e8",
                    1879309,
                ),
                DataFile(
                    "hotpotqa_distractor/rpt_test.jsonl",
                    f"{RPT}/data/hotpotqa/test.jsonl",
                    "3ab48ee61e64301dff1efbb956ca5ebdfcd1569a2e9d7381fd882e070badfb2a",
                    3124218,
                ),
                DataFile(
                    "hotpotqa_distractor/dev_first100.json",
                    f"{MEVE}/data/hotpot_dev_distractor_v1.json",
                    "32ed3ffab548f1d57ba65365bd581d17b428980fa7be881ab0c45f79d9fe6827",
                    724770,
                ),
            ),
        ),
    )
}

Opener = Callable[[str], BinaryIO]  # a URL -> a readable binary stream (urllib's; tests pass their own server's)


def default_data_dir() -> Path:
    """``NAT_RAY_DATA_DIR``, else a per-user cache (``$XDG_CACHE_HOME/nat_ray/data``)."""
    env = os.environ.get("NAT_RAY_DATA_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "nat_ray" / "data"


def _urlopen(url: str) -> BinaryIO:
    return urllib.request.urlopen(url, timeout=60)


def prepare(
    names: Iterable[str] = (),
    dest: Path | None = None,
    source_dir: Path | None = None,
    opener: Opener = _urlopen,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Fetch (or copy from ``source_dir``) every file of the named sets (all when none) into ``dest``, each checked
    against its sha256. Returns counts: ``present`` (already there, unchanged), ``fetched``."""
    chosen = list(names) or list(SOURCES)
    unknown = [n for n in chosen if n not in SOURCES]
    if unknown:
        raise InputError(f"unknown data set(s) {', '.join(unknown)}: choose from {', '.join(SOURCES)}")
    if source_dir is not None and not source_dir.is_dir():
        raise InputError(f"--from {source_dir}: not a folder")
    dest = dest or default_data_dir()
    counts = {"present": 0, "fetched": 0}
    for name in chosen:
        for f in SOURCES[name].files:
            target = dest / f.path
            if target.is_file() and target.stat().st_size == f.size and file_hash(target, 64) == f.sha256:
                counts["present"] += 1
                continue
            origin = str(source_dir / f.path) if source_dir is not None else f.url
            _fetch(f, origin, target, opener if source_dir is None else _open_local)
            counts["fetched"] += 1
            log(f"data: {f.path} ({f.size:,} bytes) from {origin}")
    log(f"data: {sum(counts.values())} files in {dest} ({counts['fetched']} fetched, {counts['present']} present)")
    return counts


def _open_local(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: missing (the --from folder holds no such file)") from None


def _fetch(f: DataFile, origin: str, target: Path, opener: Opener) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    try:
        try:
            stream = opener(origin)
        except InputError:
            raise
        except OSError as exc:  # urllib's HTTPError / URLError are OSErrors
            raise InputError(f"{f.path}: could not fetch {origin}: {exc}") from None
        with stream, part.open("wb") as out:
            while block := stream.read(1 << 20):
                h.update(block)
                out.write(block)
        if h.hexdigest() != f.sha256:
            raise InputError(f"{f.path}: sha256 {h.hexdigest()} is not the pinned {f.sha256} (from {origin}); "
                             "nothing was kept")  # fmt: skip
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def prepare_hint(path: str) -> str:
    """What to run for a data file that is not there: ``nat-ray data prepare <its set>``."""
    for s in SOURCES.values():
        if any(f.path == path for f in s.files):
            return f"run `nat-ray data prepare {s.name}` (or pass --data-dir / set NAT_RAY_DATA_DIR)"
    return "it is not one of the files `nat-ray data prepare` fetches (docs/data.md)"
