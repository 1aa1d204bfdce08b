"""The component registry and `bind`, which turns a plain callback into a Gradio handler.

Callbacks are plain functions `fn(ctx, session, *values) -> {output name: value}`; `bind` supplies the
shared context, runs them under the tab's session lock, and maps the dict onto the listener's outputs
(names a callback leaves out are skipped, i.e. not updated in the page). A callback that refuses (raises
gr.Error, see webapp.errors) leaves every output as it was and its message shows as a toast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from webapp.context import AppContext, Session

log = logging.getLogger(__name__)
_LOCKS_GUARD = threading.Lock()
_LOCK_ATTR = "_lock"


class UI(dict):
    """name -> component, with attribute access (ui.canvas)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def add(self, **components: Any) -> None:
        for name, comp in components.items():
            if name in self:
                raise ValueError(f"component {name!r} defined twice")
            self[name] = comp

    def pick(self, names: Sequence[str]) -> list:
        return [self[n] for n in names]


def session_lock(sess: Session) -> threading.RLock:
    """One lock per browser tab, created on first use (gr.State deep-copies its initial value, and locks
    cannot be copied)."""
    lock = getattr(sess, _LOCK_ATTR, None)
    if lock is None:
        with _LOCKS_GUARD:
            lock = getattr(sess, _LOCK_ATTR, None)
            if lock is None:
                lock = threading.RLock()
                object.__setattr__(sess, _LOCK_ATTR, lock)
    return lock


def to_outputs(result: dict | None, outputs: Sequence[str]) -> tuple | Any:
    """The listener's output values in order; names the callback did not return are skipped. Values for
    components the listener does not output are dropped (a callback may serve several listeners)."""
    result = result or {}
    values = tuple(result[n] if n in result else gr.skip() for n in outputs)
    return values[0] if len(values) == 1 else values


def bind(ctx: AppContext, fn: Callable[..., dict], outputs: Sequence[str], blocking: bool = True) -> Callable:
    """Handler for a listener whose first input is the session state; see the module docstring.
    blocking=False: if the tab's lock is busy (another of its events runs), return "skip everything"
    instead of waiting (for the periodic tick)."""

    def handler(sess: Session, *values: Any):
        lock = session_lock(sess)
        if not lock.acquire(blocking=blocking):
            return to_outputs({}, outputs)
        try:
            return to_outputs(fn(ctx, sess, *values), outputs)
        except gr.Error as exc:
            # A refused action (webapp.errors turns user errors into gr.Error): say why in a toast and leave
            # every output as it was. Raised on to Gradio, it would put an "Error" pill on each output
            # component, covering the page (Undo and Redo included) until each is closed.
            gr.Warning(
                exc.message, duration=exc.duration, title="Not done" if exc.title == "Error" else exc.title
            )
            log.info("refused %s: %s", handler.__name__, " ".join(str(exc.message).split())[:300])  # one line
            return to_outputs({}, outputs)
        finally:
            lock.release()

    handler.__name__ = getattr(fn, "__name__", "handler")
    return handler
