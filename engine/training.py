"""Debounced, supersedable training: one trainer thread, a generation counter per project.

Every request bumps the project's generation. The trainer waits until no request came for `debounce`
seconds (or starts at once for an explicit Train), trains, and discards its result if a newer request
arrived meanwhile: L-BFGS is interrupted at its next function evaluation (`train_head(should_stop=...)`).
So a burst of strokes costs one training, and the head that gets stored always reflects the latest edit.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import UserError
from core.train import TrainingError
from engine.results import TrainOutcome, TrainStatus

log = logging.getLogger(__name__)


class Superseded(Exception):
    """A newer request arrived while this training was running: its result would be stale."""


class TrainingTimeout(UserError, TimeoutError):
    """A wait for a fit ran out; the fit itself goes on."""


# run(project_id, generation, should_stop) -> (outcome, post-processing callable or None)
RunFn = Callable[
    [int, int, Callable[[], bool]], tuple[TrainOutcome, Callable[[Callable[[], bool]], None] | None]
]


@dataclass
class _ProjectState:
    generation: int = 0
    requested_at: float = 0.0
    immediate: bool = False
    running: int = 0  # generation being trained, 0 = none
    completed: int = 0  # highest generation that finished (with a head or an error)
    settled: int = 0  # highest generation whose work after training (evaluation, statistics) is done too
    last: TrainOutcome | None = None
    error: str | None = None
    error_generation: int = 0


class Trainer:
    """The trainer thread (see the module docstring). `run` does the actual work for one project."""

    def __init__(self, run: RunFn, debounce_s: float = 0.2):
        self._run = run
        self.debounce_s = float(debounce_s)
        self._cond = threading.Condition()
        self._projects: dict[int, _ProjectState] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="probeseg-trainer", daemon=True)
        self._thread.start()

    def _state(self, project_id: int) -> _ProjectState:
        return self._projects.setdefault(project_id, _ProjectState())

    # ------------------------------------------------------------------ public
    def request(self, project_id: int, immediate: bool = False) -> int:
        """Ask for a (re)training of the project; returns the request's generation."""
        with self._cond:
            st = self._state(project_id)
            st.generation += 1
            st.requested_at = time.monotonic()
            st.immediate = immediate
            self._cond.notify_all()
            return st.generation

    def latest_request(self, project_id: int) -> int:
        """The generation of the newest training request (0 if none)."""
        with self._cond:
            return self._state(project_id).generation

    def wait(self, project_id: int, generation: int, timeout: float | None = None) -> TrainOutcome:
        """Wait until `generation` (or a newer one superseding it) has finished; return its outcome or
        raise TrainingError with the reason no head was trained."""
        with self._cond:
            st = self._state(project_id)
            if not self._cond.wait_for(lambda: st.completed >= generation or self._stop, timeout):
                raise TrainingTimeout(
                    f"training did not finish within {timeout:.0f} s; it goes on in the background"
                )
            if (
                st.error is not None
                and st.error_generation >= generation
                and (st.last is None or st.error_generation > st.last.generation)
            ):
                raise TrainingError(st.error)
            if st.last is None:
                raise TrainingError("training was stopped")
            return st.last

    def wait_settled(self, project_id: int, generation: int, timeout: float | None = None) -> None:
        """Wait until `generation` (or a newer one) has finished and so has the work after it: the
        evaluation, the run record and the per-image statistics are stored. Never raises a training
        error (see `wait` for that); raises TrainingTimeout."""
        with self._cond:
            st = self._state(project_id)
            if not self._cond.wait_for(lambda: st.settled >= generation or self._stop, timeout):
                raise TrainingTimeout(f"the work after training did not finish within {timeout:.0f} s")

    def status(self, project_id: int) -> TrainStatus:
        with self._cond:
            st = self._state(project_id)
            if st.running:
                state = "running"
            elif st.generation > st.completed:
                state = "pending"
            else:
                state = "idle"
            return TrainStatus(state, st.generation, st.last, st.error, st.error_generation)

    def seed_last(self, project_id: int, outcome: TrainOutcome) -> None:
        """Show a head trained before this process started as the project's last training."""
        with self._cond:
            st = self._state(project_id)
            if st.last is None:
                st.last = outcome

    def annotate(self, project_id: int, generation: int, **changes) -> None:
        """Add results computed after training (e.g. mIoU) to the outcome of `generation`."""
        with self._cond:
            st = self._state(project_id)
            if st.last is not None and st.last.generation == generation:
                st.last = dataclasses.replace(st.last, **changes)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            for st in self._projects.values():
                st.generation += 1  # stops a running training at its next step
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread
    def _next_due(self) -> tuple[int | None, float]:
        """The project to train next (or None) and how long to wait before it is due."""
        best, best_wait = None, float("inf")
        now = time.monotonic()
        for pid, st in self._projects.items():
            if st.generation > st.completed and not st.running:
                wait = 0.0 if st.immediate else max(0.0, st.requested_at + self.debounce_s - now)
                if wait < best_wait:
                    best, best_wait = pid, wait
        return best, best_wait

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    pid, wait = self._next_due()
                    if pid is not None and wait <= 0:
                        break
                    self._cond.wait(None if pid is None else wait)
                st = self._state(pid)
                gen = st.generation
                st.running = gen
            self._train_one(pid, st, gen)

    def _train_one(self, pid: int, st: _ProjectState, gen: int) -> None:
        def should_stop() -> bool:
            return self._stop or st.generation != gen

        post = None
        try:
            outcome, post = self._run(pid, gen, should_stop)
            with self._cond:
                st.last = outcome
                st.completed = max(st.completed, gen)
        except Superseded:
            return  # the newer request is pending; the loop picks it up
        except UserError as exc:
            with self._cond:
                st.error, st.error_generation = str(exc), gen
                st.completed = max(st.completed, gen)
        except Exception:  # a bug: logged with its traceback; never let the trainer thread die
            log.exception("training of project %s failed", pid)
            with self._cond:
                st.error, st.error_generation = (
                    "internal error during training (the details are in the server log)",
                    gen,
                )
                st.completed = max(st.completed, gen)
        finally:
            with self._cond:
                st.running = 0
                self._cond.notify_all()
        if post is not None:
            try:
                post(should_stop)
            except Superseded:
                pass
            except Exception:
                log.exception("post-training update of project %s failed", pid)
        with self._cond:
            st.settled = max(st.settled, gen)
            self._cond.notify_all()
