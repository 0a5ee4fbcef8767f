"""The skip / redo / resume rule of pipeline stages (their records: ``nat_ray.records``).

A stage whose output holds a complete manifest with the same config hash is skipped. An output made with another hash
is removed and the stage runs again (everything downstream has another hash too, so it follows). An output with an
incomplete manifest of the same hash is resumed by the stage itself (rollout and eval keep what they wrote).

Paths inside the run folder (a model an eval serves, the checkpoint a round starts from) enter the hash relative to
it, so a run folder moved or copied elsewhere (another machine, a study that reuses another's first round) keeps
its stages. A stage recorded before that, with the absolute path, is still recognised, and its manifest rewritten.
Input files outside the run (the data a collect stage reads) enter the hash by path and content; a run whose data
folder moved (another machine, another home) with every file's content the same is the same run
(:func:`moved_inputs`): its stages keep their hash, so the stages after them keep theirs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nat_ray.hardware import machine
from nat_ray.records import STAGE_FILE, StageManifest, config_hash, read_stage, versions
from nat_ray.storage import write_record

if TYPE_CHECKING:  # the mirror builds on this module (its manifests)
    from nat_ray.pipeline.mirror import StageMirror
    from nat_ray.tracking import Tracker


RUN = "$RUN"  # the run folder, in a stage's hashed view


def portable(view: object, root: Path | None) -> object:
    """``view`` with every path inside ``root`` written as ``$RUN/…``: what it names, not where the run lies."""
    if root is None:
        return view
    top = str(root).rstrip("/")
    if isinstance(view, str):
        return RUN + view[len(top) :] if view == top or view.startswith(top + "/") else view
    if isinstance(view, dict):
        return {k: portable(x, root) for k, x in view.items()}
    if isinstance(view, list | tuple):
        return [portable(x, root) for x in view]
    return view


def stored_config(view: object) -> dict:
    """A stage's view as its record keeps it (``config``)."""
    return view if isinstance(view, dict) else {"view": view}


def moved_inputs(old: StageManifest, view: object, upstream: dict[str, str], root: Path | None = None) -> bool:
    """``old`` is this stage with its inputs found elsewhere: the same config, the same input contents by hash, only
    the paths they are keyed by differ."""
    return (
        portable(old.config, root) == portable(stored_config(view), root)
        and old.inputs.keys() != upstream.keys()
        and sorted(old.inputs.values()) == sorted(upstream.values())
    )


def run_stage(
    folder: Path,
    stage: str,
    variant: str | None,
    view: object,
    upstream: dict[str, str],
    body: Callable[[], dict],
    say: Callable[[str], None] = print,
    mirror: StageMirror | None = None,
    tracker: Tracker | None = None,
    root: Path | None = None,
) -> StageManifest:
    """Run ``body`` (which writes into ``folder`` and returns counts) unless a complete run with this hash is there.
    ``root``: the run folder (paths inside it are hashed relative to it). With a ``mirror``, the completed folder is
    uploaded (also a skipped one the mirror lacks)."""
    digest = config_hash(portable(view, root), upstream)
    label = f"{stage}{f' {variant}' if variant else ''}"
    old = read_stage(folder)
    if old is not None and old.config_hash != digest and old.config_hash == config_hash(view, upstream):
        old = old.model_copy(update={"config_hash": digest})  # recorded with the absolute path: the same stage
        write_record(folder / STAGE_FILE, old)
        if mirror is not None and old.complete:
            mirror.push(folder)
    moved = old is not None and old.config_hash != digest and moved_inputs(old, view, upstream, root)
    if old is not None and (old.config_hash == digest or moved) and old.complete:
        why = " (its input files moved, their contents the same)" if moved else ""
        say(f"pipeline: {label}: up to date, skipped{why}")
        if mirror is not None and not mirror.has(folder):
            mirror.push(folder)
        if tracker is not None:
            tracker.stage(old, folder, "skipped")
        return old
    if folder.exists() and (old is None or old.config_hash != digest):
        if old is not None or any(folder.iterdir()):
            say(f"pipeline: {label}: made with another config, redone")
        shutil.rmtree(folder)
    elif old is not None:
        say(f"pipeline: {label}: resuming")
    folder.mkdir(parents=True, exist_ok=True)
    base = {
        "stage": stage,
        "variant": variant,
        "config_hash": digest,
        "config": stored_config(view),
        "inputs": upstream,
    }
    base["versions"] = versions()
    base["machine"] = machine()  # (a resumed stage records the machine that finished it)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_record(folder / STAGE_FILE, StageManifest(**base, started_at=started))
    say(f"pipeline: {label}: running")
    t0 = time.monotonic()
    counts = body()
    done = StageManifest(
        **base,
        started_at=started,
        seconds=round(time.monotonic() - t0, 1),
        counts=counts,
        outputs=sorted(p.name for p in folder.iterdir() if p.name != STAGE_FILE),
        complete=True,
    )
    write_record(folder / STAGE_FILE, done)
    if mirror is not None:
        mirror.push(folder)
    if tracker is not None:
        tracker.stage(done, folder, "resumed" if old is not None else "ran")
    say(f"pipeline: {label}: done in {done.seconds:.0f} s")
    return done
