"""The train stage's progress line, on the driver: what the workers are doing, measured over real wall time.

Workers put events on a ``ray.util.queue.Queue`` (``ready`` once the model is loaded, ``micro`` after every
micro-batch with its non-pad tokens, ``saving``); the metrics log adds the loss at each logging step. The line shows
steps done of total, the micro-batch within the step, the latest loss and elapsed time from the first micro-batch on;
seconds per step, an ETA and tokens/s (all workers' tokens) once they are measured: the clock starts when the first
micro-batch ends, so a worker's first micro-batch (model warm-up included) is not in the rates, and a rate is shown
only after a step, or a micro-batch, has ended since then.
"""

from __future__ import annotations

import json
import queue as queue_lib
import sys
import threading
import time
from pathlib import Path
from typing import Any


def say(message: str) -> None:
    print(f"train: {message}", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainProgress:
    def __init__(self, events: Any, metrics_log: Path, workers: int, accumulation: int) -> None:
        self.events, self.metrics_log = events, metrics_log
        self.workers, self.accumulation = workers, accumulation
        self.launched = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.drawing = False  # the line is drawn once the workers are ready
        self.tty = sys.stderr.isatty()
        self._last_line = 0.0
        self.ready: set[int] = set()
        self.first_step_at: float | None = None
        self.last_step_at: float | None = None
        self.last_micro_at: float | None = None
        self.start_step = self.step = self.micro = self.tokens = 0
        self.clock_step = 0  # the step count when the clock started
        self.ranks_seen: set[int] = set()  # ranks whose first micro-batch has ended (its tokens are not in the rate)
        self.total = 0
        self.loss: float | None = None
        self._metrics_seen = 0

    def start(self) -> TrainProgress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        if self.drawing:
            self._draw(final=True)

    def _run(self) -> None:
        last_draw = 0.0
        while not self._done.is_set():
            try:
                event = self.events.get(timeout=0.5)
            except queue_lib.Empty:
                event = None
            except Exception:  # the queue actor went away with the run
                event = None
                self._done.wait(0.5)
            if event is not None:
                self._handle(event)
            self._read_metrics()
            if self.drawing and time.monotonic() - last_draw > 1.0:
                self._draw()
                last_draw = time.monotonic()

    def _handle(self, e: dict) -> None:
        if e["event"] == "ready":
            self.ready.add(e["rank"])
            self.total, self.start_step = e["total_steps"], e["step"]
            if e["rank"] == 0:
                resumed = f", resuming at step {e['step']}" if e["step"] else ""
                how = f" in {e['precision']}" if e.get("precision") else ""
                ready = _clock(time.monotonic() - self.launched)
                say(f"workers ready after {ready} (model loaded{resumed}); training{how}")
                self._open_bar()
        elif e["event"] == "micro":
            now = time.monotonic()
            if e["rank"] == 0:
                self.micro = e["micro"]
                if e["micro"] == self.accumulation:
                    self.step, self.last_step_at = e["step"], now
            if self.first_step_at is None:
                self.first_step_at, self.clock_step = now, self.step
            if e["rank"] in self.ranks_seen:
                self.tokens += e["tokens"]
                self.last_micro_at = now
            self.ranks_seen.add(e["rank"])
        elif e["event"] == "saving" and e["rank"] == 0:
            self._draw(final=True)
            self.drawing = False
            say("gathering the final weights and writing the model")

    def _open_bar(self) -> None:
        self.drawing = True
        self.step = self.start_step

    def _read_metrics(self) -> None:
        if not self.metrics_log.exists():
            return
        lines = self.metrics_log.read_text().splitlines()
        for line in lines[self._metrics_seen :]:
            self.loss = json.loads(line).get("loss", self.loss)
        self._metrics_seen = len(lines)

    def _draw(self, final: bool = False) -> None:
        """One line, redrawn in place on a terminal; in a log (no terminal) a line every 30 s and at the end."""
        now = time.monotonic()
        if not self.tty and not final and now - self._last_line < 30:
            return
        self._last_line = now
        parts = [f"train {self.step}/{self.total} steps", f"micro-batch {self.micro}/{self.accumulation}"]
        if self.first_step_at is not None:
            done = self.step - self.clock_step  # steps ended since the clock started
            if done > 0 and self.last_step_at is not None and self.last_step_at > self.first_step_at:
                per_step = (self.last_step_at - self.first_step_at) / done
                parts.append(f"{per_step:.1f} s/step")
                parts.append(f"ETA {_clock(per_step * (self.total - self.step))}")
            if self.tokens and self.last_micro_at is not None and self.last_micro_at > self.first_step_at:
                # up to the last micro-batch that ended, not to now: tokens still in flight are not counted yet
                parts.append(f"{self.tokens / (self.last_micro_at - self.first_step_at):.0f} tok/s")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        parts.append(f"elapsed {_clock(now - self.launched)}")
        line = " | ".join(parts)
        if self.tty:
            end = "\n" if final else ""
            print(f"\r{line:<120}", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
