"""Turn exceptions from core, storage and the engine into messages in the page, never tracebacks."""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from typing import TypeVar

import gradio as gr

from core.errors import UserError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable)


def user_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return html.escape(text[:1].upper() + text[1:], quote=False).replace(
        "\n", "<br>"
    )  # gr.Error renders HTML


def ui_errors(fn: F) -> F:
    """Decorator for callbacks: user errors (`core.errors.UserError`) become `gr.Error(message)`; anything
    else is a bug, logged with its traceback on the server and shown as a short internal-error message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserError as exc:
            raise gr.Error(user_message(exc), print_exception=False) from None
        except Exception:
            _internal(fn)

    return wrapper  # type: ignore[return-value]


def _internal(fn: Callable) -> None:
    """Log the traceback; tell the user plainly, without internals (an exception's text may hold SQL or
    reprs) and without claiming anything was saved."""
    log.exception("callback %s failed", getattr(fn, "__name__", fn))
    raise gr.Error(
        "Internal error: this action did not complete (the details are in the server log). Edits "
        "confirmed earlier are stored; reload the page to see the stored state.",
        print_exception=False,
    ) from None
