"""Callback errors reach the page as words: user errors say what to fix, bugs say 'internal error' without
their internals (reprs, SQL) and without claiming anything was saved; the traceback goes to the log."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from core.errors import InputError
from core.train import TrainingError
from storage import ValidationError
from webapp.errors import ui_errors


def _raising(exc: BaseException):
    @ui_errors
    def callback():
        raise exc

    return callback


@pytest.mark.parametrize(
    "exc",
    [
        ValidationError("photo.png: the file is empty"),
        TrainingError("photo.png: the file is empty"),
        InputError("photo.png: the file is empty"),
    ],
)
def test_user_errors_keep_their_message(exc):
    with pytest.raises(gr.Error, match="Photo.png: the file is empty"):
        _raising(exc)()


@pytest.mark.parametrize(
    "exc",
    [
        KeyError("file"),
        IndexError("list index out of range"),
        ValueError("operands could not be broadcast together with shapes (3,) (4,)"),
        LookupError("no such thing"),
        RuntimeError(
            "(sqlite3.OperationalError) attempt to write a readonly database "
            "[SQL: INSERT INTO annotation ...]"
        ),
    ],
)
def test_bugs_are_internal_errors_without_internals(exc, caplog):
    with caplog.at_level(logging.ERROR, logger="webapp.errors"), pytest.raises(gr.Error) as err:
        _raising(exc)()
    text = err.value.message
    assert text.startswith("Internal error") and "saved" not in text
    assert "'file'" not in text and "SQL" not in text and "sqlite" not in text and "broadcast" not in text
    assert any(r.exc_info for r in caplog.records)  # the traceback is in the server log


def test_a_refused_callback_leaves_every_output_and_says_why(monkeypatch, caplog):
    """Through `bind` (what Gradio calls) a refusal is a toast, never an exception: a raised gr.Error would put
    an "Error" pill over every output component of the event."""
    from webapp.context import Session
    from webapp.ui import bind

    shown: list[str] = []
    monkeypatch.setattr(gr, "Warning", lambda message, **kw: shown.append(message))

    @ui_errors
    def refuse(ctx, sess):  # type: ignore[no-untyped-def]
        raise ValidationError("the project already has a class named red; pick another name")

    with caplog.at_level(logging.INFO, logger="webapp.ui"):
        out = bind(None, refuse, ["state", "gallery", "classes"])(Session())  # type: ignore[arg-type]
    assert all(isinstance(v, type(gr.skip())) for v in out)  # nothing updated
    assert shown == ["The project already has a class named red; pick another name"]
    [record] = [r for r in caplog.records if r.name == "webapp.ui"]  # logged as one line, no traceback
    assert (
        "\n" not in record.getMessage()
        and record.exc_info is None
        and "class named red" in record.getMessage()
    )
