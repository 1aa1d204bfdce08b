"""Command-line entry point: `python app.py [serve|train|predict|evaluate|...]`.

Each subcommand lives in its own module with `register(subparsers)`; this file only wires them and turns
the clear exceptions raised by core/storage into one-line messages (no tracebacks for bad input).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Subcommand modules, in the order `--help` lists them. `serve` is the default.
COMMAND_MODULES = ("cli.serve", "cli.dataset", "cli.experiments", "cli.bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="probeseg: semantic segmentation from scribbles, points and noisy masks with a frozen "
        "DINOv2 and a linear head. Without a subcommand, starts the web app (serve).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that subcommand is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # the registered subcommand names
    verbose = any(a in ("-v", "--verbose") for a in argv)
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    if not (set(argv) & {"-h", "--help"}) and not (argv and argv[0] in commands):
        argv = ["serve", *argv]  # `python app.py --port 8000` means `python app.py serve --port 8000`
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (KeyError, IndexError) as exc:  # bugs: their text is a bare repr, never a message for the user
        if verbose:
            raise
        print(f"internal error ({type(exc).__name__}); run again with -v for the traceback and report it",
              file=sys.stderr)
        return 1
    except (ValueError, LookupError, RuntimeError, OSError) as exc:
        if verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from storage.errors import StorageError  # imported here: storage pulls in SQLAlchemy

        if verbose or not isinstance(exc, StorageError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
