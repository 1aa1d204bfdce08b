"""Command-line entry point: `python app.py [serve|train|predict|evaluate|...]`.

Each subcommand lives in its own module with `register(subparsers)`, listed in `cli.commands`; this file
imports only the module of the command that runs (so `--help` needs neither torch nor gradio) and turns the
user errors raised by core/storage (`core.errors.UserError`) into one-line messages; any other exception is
a bug, written with its traceback to a log file that the message names.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import logging
import os
import sys

from cli.commands import COMMANDS
from core.errors import UserError


def version() -> str:
    """The project's version, from pyproject.toml (the one place it is written)."""
    import tomllib
    from pathlib import Path

    try:
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        try:
            return installed("probeseg")
        except PackageNotFoundError:
            return "unknown"


def _prog() -> str:
    """How the user called us: the installed `probeseg` command or `python app.py`."""
    return "probeseg" if os.path.basename(sys.argv[0]) == "probeseg" else "python app.py"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser of `command`; the other commands are listed with their one-line help only, so that
    nothing but the running command's module is imported."""
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="probeseg: semantic segmentation from scribbles, points and noisy masks with a frozen "
        "DINOv2 and a linear head. Without a subcommand, starts the web app (serve).",
        epilog="Exit status: 0 success, 1 failure (a clear message on stderr), 2 usage error, 130 interrupted. "
        "`python app.py COMMAND --help` lists a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    parser.add_argument("--version", action="version", version=f"probeseg {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if (
            name in sub.choices or importlib.util.find_spec(module) is None
        ):  # registered, or not in this build
            continue
        if command in COMMANDS and COMMANDS[command][0] == module:
            importlib.import_module(module).register(sub)  # adds every command of that module
        else:
            sub.add_parser(name, help=help_)  # listed; its options are loaded with its module
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in argv)
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    wants_help = bool(set(argv) & {"-h", "--help", "--version"})
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(
            f"{_prog()}: error: invalid choice: '{argv[0]}' (choose from {', '.join(COMMANDS)}){hint}",
            file=sys.stderr,
        )
        return 2
    if not argv or argv[0] not in COMMANDS:
        if wants_help:
            try:
                build_parser().parse_args(argv)  # prints the help or the version and exits
            except SystemExit as exc:
                return int(exc.code or 0)
        argv = ["serve", *argv]  # `python app.py --port 8000` means `python app.py serve --port 8000`
    parser = build_parser(argv[0])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error, already printed by argparse
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    if not verbose:  # alembic announces each of its plugins at INFO: noise at every start
        logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, OSError) as exc:  # written for the user (a missing or unreadable file included)
        if verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug, whatever its type: its text is no advice, its traceback is kept
        if verbose:
            raise
        print(
            f"internal error ({type(exc).__name__}), logged to {_log_internal()}; please report it",
            file=sys.stderr,
        )
        return 1


def _log_internal() -> str:
    """Write the exception being handled, with its traceback, to a log file; returns the file's path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="probeseg-internal-error-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(f"probeseg {' '.join(sys.argv[1:])}\n")
        traceback.print_exc(file=f)
    return path
