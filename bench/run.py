"""`python -m bench` / `python app.py bench`: run the benchmarks, print the table, write the reports."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

from bench.config import PARTS, PRESETS, BenchConfig
from bench.report import Report
from bench.timing import load_average, machine_info

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR.parent / "out" / "bench"  # /out/ is git-ignored
RESULTS_FILE = BENCH_DIR / "RESULTS.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, about 2 minutes")
    size.add_argument("--preset", choices=sorted(PRESETS), default=None, help="full (default), quick or tiny")
    p.add_argument("--out", type=Path, default=None, help=f"report folder (default {DEFAULT_OUT}/<preset>)")
    p.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)} (default: all)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of all synthetic data (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--app-url", default=None, help="latency: use this running app instead of starting one")
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"also write the Markdown report here (a full run with every part writes {RESULTS_FILE} by default)",
    )
    p.add_argument("--no-results", action="store_true", help="never write bench/RESULTS.md")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="probeseg benchmarks: retrain speed, dense masks, stroke-to-overlay latency, feature "
        "throughput and memory, each against a baseline measured in the same run.",
    )
    add_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def select_config(args: argparse.Namespace) -> BenchConfig:
    name = "quick" if args.quick else (args.preset or "full")
    cfg = PRESETS[name]
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    return cfg


def parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown benchmark part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    return [p for p in PARTS if p in parts]


def run_benchmarks(
    cfg: BenchConfig, parts: list[str], out_dir: Path, app_url: str | None = None, echo: bool = True
) -> Report:
    """Run the chosen parts in one process and write report.json / report.md / report.txt to out_dir."""
    from bench import features, latency, memory, trainer

    start = time.perf_counter()
    report = Report(machine=machine_info(), config=cfg.to_dict(), mode=cfg.name)
    report.config["parts"] = parts
    runners = {
        "trainer": lambda: trainer.run_retrain(cfg, report),
        "dense": lambda: trainer.run_dense(cfg, report),
        "latency": lambda: latency.run_latency(cfg, report, app_url=app_url),
        "features": lambda: features.run_features(cfg, report),
        "memory": lambda: memory.run_memory(cfg, report),
    }
    for part in parts:
        log.info("== %s", part)
        t0 = time.perf_counter()
        try:
            runners[part]()
        except Exception as exc:  # one broken part must not hide the others' numbers
            log.error("part %s failed: %s", part, exc)
            s = report.section(f"{part}_error", f"{part}: FAILED", [])
            s.skipped = f"error: {type(exc).__name__}: {exc}"
            s.notes.append("traceback: " + traceback.format_exc().strip().splitlines()[-1])
            report.target(f"{part} part ran", "no error", "error", False, str(exc)[:200])
        report.part_seconds[part] = round(time.perf_counter() - t0, 1)
        log.info("   %s took %.1f s", part, report.part_seconds[part])
    report.seconds = time.perf_counter() - start
    report.machine["load_average_end"] = load_average()
    paths = report.write(out_dir)
    if echo:
        print(report.to_text())
        print(f"\nreports: {paths['json']}, {paths['markdown']}")
    return report


def run(args: argparse.Namespace) -> int:
    for noisy in ("alembic", "httpx", "urllib3", "gradio_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = select_config(args)
    parts = parse_parts(args.parts)
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = args.out or DEFAULT_OUT / cfg.name
    report = run_benchmarks(cfg, parts, out_dir, app_url=args.app_url)
    targets = [args.results] if args.results else []
    if cfg.name == "full" and parts == list(PARTS) and not args.no_results:
        targets.append(RESULTS_FILE)
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.to_markdown("probeseg benchmark results (latest full run)"))
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
