"""User text (class, image and project names, file names, reasons) inside Markdown: shown as typed, never
as markup. HTML is escaped and Markdown punctuation backslash-escaped (a '|' would otherwise split a table
cell, '**' start bold, '<img onerror=...>' reach the sanitiser)."""

from __future__ import annotations

import html
import re

_MD_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md(text: object) -> str:
    return _MD_PUNCTUATION.sub(r"\\\1", html.escape(str(text), quote=True))
