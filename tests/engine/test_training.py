"""The trainer's debounce / generation logic with a fake training function, and the L-BFGS interrupt."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.active import regions
from core.train import TrainingError
from engine.analysis import refine_layer
from engine.results import TrainOutcome
from engine.training import Superseded, Trainer


def outcome(gen: int) -> TrainOutcome:
    return TrainOutcome(gen, gen, 0.0, 0.0, 1, {}, 1, 1)


class FakeRun:
    def __init__(self, seconds: float = 0.0):
        self.calls: list[int] = []
        self.seconds = seconds
        self.started = threading.Event()

    def __call__(self, pid, gen, stop):
        self.calls.append(gen)
        self.started.set()
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            if stop():
                raise Superseded()
            time.sleep(0.005)
        if gen < 0:
            raise TrainingError("nope")
        return outcome(gen), None


def test_burst_of_requests_trains_once_with_the_latest():
    run = FakeRun()
    trainer = Trainer(run, debounce_s=0.2)
    try:
        gens = [trainer.request(1) for _ in range(5)]
        assert trainer.status(1).state == "pending"
        assert trainer.wait(1, gens[0], timeout=10).generation == gens[-1]
        assert run.calls == [gens[-1]]
    finally:
        trainer.close()


def test_a_newer_request_interrupts_a_running_training():
    run = FakeRun(seconds=5.0)
    trainer = Trainer(run, debounce_s=0.0)
    try:
        first = trainer.request(7, immediate=True)
        assert run.started.wait(5)
        run.seconds = 0.0
        second = trainer.request(7, immediate=True)
        t0 = time.monotonic()
        result = trainer.wait(7, first, timeout=10)
        assert result.generation == second and time.monotonic() - t0 < 4
        assert run.calls == [first, second]
        assert trainer.status(7).state == "idle"
    finally:
        trainer.close()


def test_training_errors_reach_the_waiter():
    def failing(pid, gen, stop):
        raise TrainingError("only the class 'red' is labelled")

    trainer = Trainer(failing, debounce_s=0.0)
    try:
        gen = trainer.request(1, immediate=True)
        with pytest.raises(TrainingError, match="only the class"):
            trainer.wait(1, gen, timeout=10)
        status = trainer.status(1)
        assert status.error and "only the class" in status.describe()
    finally:
        trainer.close()


def test_regions_and_refine_layer():
    grid = np.zeros((6, 8), np.float32)
    grid[1:3, 5:7] = 0.9
    grid[4, 0] = 0.5
    spots = regions(grid, (60, 80), n=3)
    assert spots[0].box == (50, 10, 70, 30) and spots[0].score == pytest.approx(3.6)
    assert 10 <= spots[0].peak[0] < 30 and 50 <= spots[0].peak[1] < 70
    assert regions(np.zeros((6, 8), np.float32), (60, 80)) == []

    from core.predict import Prediction

    pred = Prediction(
        labels=np.array([[0, 1], [1, 1]], np.uint8),
        confidence=np.array([[0.99, 0.6], [0.95, 0.99]], np.float32),
        entropy=np.zeros((2, 2), np.float32),
    )
    scribbles = np.array([[255, 255], [255, 0]], np.uint8)
    out, added = refine_layer(scribbles, pred, 0.9)
    assert added == 2 and out.tolist() == [[0, 255], [1, 0]]  # the user's own label (0) is kept


def test_the_work_after_training_can_be_awaited():
    released, done = threading.Event(), []

    def run(pid, gen, stop):
        def post(stop_post):
            released.wait(30)  # evaluation and statistics take a while
            done.append(gen)

        return outcome(gen), post

    trainer = Trainer(run, debounce_s=0.0)
    try:
        gen = trainer.request(3, immediate=True)
        assert trainer.wait(3, gen, timeout=10).generation == gen  # the head is there ...
        assert done == []  # ... but not the work after it
        with pytest.raises(TimeoutError):
            trainer.wait_settled(3, gen, timeout=0.2)
        released.set()
        trainer.wait_settled(3, gen, timeout=30)
        assert done == [gen]
    finally:
        released.set()
        trainer.close()


def test_a_bug_in_training_reaches_the_waiter_as_an_internal_error_without_its_text():
    def run(pid, gen, stop):
        raise KeyError("secret-internal-name")

    trainer = Trainer(run, debounce_s=0.0)
    try:
        gen = trainer.request(4, immediate=True)
        with pytest.raises(TrainingError, match="internal error") as err:
            trainer.wait(4, gen, timeout=10)
        assert "secret-internal-name" not in str(err.value)
        trainer.wait_settled(4, gen, timeout=10)  # a failed fit has nothing after it: settled at once
    finally:
        trainer.close()
