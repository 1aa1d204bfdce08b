"""`python app.py bench [--quick]`: the benchmarks (the same run as `python -m bench`)."""

from __future__ import annotations

import argparse

from cli.commands import help_of


def register(subparsers) -> argparse.ArgumentParser:
    from bench.run import add_arguments

    p = subparsers.add_parser(
        "bench",
        help=help_of("bench"),
        description="Run the benchmarks (same as `python -m bench`): each figure is a median over repeats after a "
        "warm-up and each comparison a ratio measured in the same run. Prints a table and writes JSON and "
        "Markdown reports; a full run also updates bench/RESULTS.md.",
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from bench.run import run as run_bench

    return run_bench(args)
