"""The linter, the formatter and the type checker are part of the test suite, so `python -m pytest` is the one
command that checks everything. Ruff's settings (pyproject.toml) include line length and a complexity limit."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_code_is_formatted():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, "run `ruff format .`:\n" + out.stdout + out.stderr


def test_the_types_check():
    """mypy over core/, storage/, engine/ and webapp/ (the settings are in pyproject.toml)."""
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
