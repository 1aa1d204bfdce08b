"""`python -m bench` / `python app.py bench`: run the benchmarks, print the table, write the reports."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from bench.config import PARTS, PRESETS, BenchConfig
from bench.report import Report, json_safe, results_markdown, seconds
from bench.timing import load_average, machine_info
from core.errors import InputError, UserError

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR.parent / "out" / "bench"  # /out/ is git-ignored
RESULTS_FILE = BENCH_DIR / "RESULTS.md"
RESULTS_JSON = BENCH_DIR / "RESULTS.json"
NOTES_FILE = BENCH_DIR / "NOTES.md"  # the hand-written reading appended to RESULTS.md
CHECK_TOLERANCE = 0.25  # --check flags CPU-time figures more than this much worse than the recorded ones


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
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="also write this run's Markdown report here (a full-size run always updates bench/RESULTS.json and "
        "RESULTS.md for the parts it ran)",
    )
    p.add_argument(
        "--no-results", action="store_true", help="do not update bench/RESULTS.md and RESULTS.json"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="regression check: a quick trainer run compared with the figures recorded in bench/RESULTS.json; "
        f"prints every CPU-time figure more than {CHECK_TOLERANCE * 100:.0f}%% worse and exits 1 if there is one",
    )
    p.add_argument(
        "--record", action="store_true", help="with --check: record this run's figures as the reference"
    )
    p.add_argument(
        "--render",
        action="store_true",
        help="only rewrite bench/RESULTS.md from bench/RESULTS.json and bench/NOTES.md (no benchmark)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="probeseg benchmarks: retrain speed, dense masks, the annotation canvas in a browser, feature "
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
        raise InputError(f"unknown benchmark part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    return [p for p in PARTS if p in parts]


def run_benchmarks(cfg: BenchConfig, parts: list[str], out_dir: Path, echo: bool = True) -> Report:
    """Run the chosen parts in one process and write report.json / report.md / report.txt to out_dir."""
    from bench import active, canvas, features, memory, resolution, scale, soak, trainer

    start = time.perf_counter()
    report = Report(machine=machine_info(), config=cfg.to_dict(), mode=cfg.name)
    report.config["parts"] = parts
    runners = {
        "trainer": lambda: trainer.run_retrain(cfg, report),
        "dense": lambda: trainer.run_dense(cfg, report),
        "canvas": lambda: canvas.run_canvas(cfg, report),
        "features": lambda: features.run_features(cfg, report),
        "memory": lambda: memory.run_memory(cfg, report),
        "soak": lambda: soak.run_soak(cfg, report),
        "active": lambda: active.run_active(cfg, report),
        "scale": lambda: scale.run_scale(cfg, report),
        "resolution": lambda: resolution.run_resolution(cfg, report),
    }
    for part in parts:
        log.info("== %s", part)
        t0 = time.perf_counter()
        first = (len(report.sections), len(report.targets))
        try:
            runners[part]()
        except Exception as exc:  # one broken part must not hide the others' numbers
            log.error("part %s failed: %s", part, exc)
            s = report.section(f"{part}_error", f"{part}: FAILED", [])
            s.skipped = f"error: {type(exc).__name__}: {exc}"
            s.notes.append("traceback: " + traceback.format_exc().strip().splitlines()[-1])
            report.target(f"{part} part ran", "no error", "error", False, str(exc)[:200])
        report.part_seconds[part] = round(time.perf_counter() - t0, 1)
        report.part_items[part] = (first, (len(report.sections), len(report.targets)))
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
    if args.check:
        return run_check(args)
    if args.render:
        render_results()
        print(f"wrote {RESULTS_FILE}")
        return 0
    cfg = select_config(args)
    parts = parse_parts(args.parts)
    if args.threads:
        import torch  # here, not at the top: `bench --help` needs no torch

        torch.set_num_threads(args.threads)
    out_dir = args.out or DEFAULT_OUT / cfg.name
    report = run_benchmarks(cfg, parts, out_dir)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(report.to_markdown("probeseg benchmark results"))
        print(f"wrote {args.results}")
    if cfg.name == "full" and not args.no_results:  # full-size figures replace those parts' committed ones
        write_results_json(report, RESULTS_JSON)
        render_results()
        print(f"wrote {RESULTS_JSON} and {RESULTS_FILE} ({', '.join(parts)})")
    return 0


def render_results() -> None:
    data = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {}
    notes = NOTES_FILE.read_text() if NOTES_FILE.is_file() else ""
    RESULTS_FILE.write_text(results_markdown(data, PARTS, notes))


def write_results_json(report: Report, path: Path) -> dict:
    """One key per part (its sections, targets, machine and load), replacing that part's previous figures
    and keeping the others; `trainer` also gets the flat CPU-time figures that --check compares."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    full = report.to_dict()
    for part, ((s0, t0), (s1, t1)) in report.part_items.items():
        entry = {
            "machine": full["machine"],
            "seconds": report.part_seconds.get(part),
            "sections": full["sections"][s0:s1],
            "targets": full["targets"][t0:t1],
        }
        if part == "trainer":
            entry["cpu_figures_s"] = check_figures(report)
        entry |= report.figures.get(part, {})  # named figures (e.g. canvas: op_ack_p50_ms, ...)
        data[part] = entry
    path.write_text(json.dumps(json_safe(data), indent=2) + "\n")
    return data


def check_figures(report: Report) -> dict[str, float]:
    """Named CPU-time figures of the trainer part (seconds): each trainer cell and each interactive fit."""
    out = {}
    for s in report.sections:
        if s.key == "retrain_time":
            for r in s.records:
                out[f"trainer {r['dim']}-d {r['labelled_pixels']} px"] = r["trainer"]["cpu_median_s"]
        elif s.key == "interactive":
            for r in s.records:
                out[f"{r['fit']} {r['dim']}-d"] = r["time"]["cpu_median_s"]
    return out


def run_check(args: argparse.Namespace) -> int:
    """Quick trainer run against the figures recorded by the last `--check --record` (in RESULTS.json)."""
    cfg = PRESETS["quick"]
    report = run_benchmarks(cfg, ["trainer"], args.out or DEFAULT_OUT / "check", echo=False)
    figures = check_figures(report)
    data = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {}
    if args.record:
        data["check"] = {"preset": cfg.name, "machine": report.machine, "cpu_figures_s": figures}
        RESULTS_JSON.write_text(json.dumps(json_safe(data), indent=2) + "\n")
        print(f"recorded {len(figures)} figures in {RESULTS_JSON}")
        return 0
    reference = data.get("check", {}).get("cpu_figures_s")
    if not reference:
        raise InputError(
            f"{RESULTS_JSON} has no recorded figures; run `python -m bench --check --record` first"
        )
    worse = []
    for name, now in figures.items():
        ref = reference.get(name)
        status = "new" if ref is None else f"{now / ref:.2f}x"
        if ref is not None and now > ref * (1 + CHECK_TOLERANCE):
            worse.append(name)
            status += f"  WORSE (> {1 + CHECK_TOLERANCE:.2f}x)"
        print(f"{name:40s} {seconds(now):>10s} vs {seconds(ref) if ref else '-':>10s}  {status}")
    print(f"load average {report.machine.get('load_average_start')} -> {load_average()}")
    then = data.get("check", {}).get("machine", {}).get("host_speed")
    now_speed = report.machine.get("host_speed")
    if then and now_speed:
        ratio = now_speed["skinny_eval_us"] / then["skinny_eval_us"]
        print(
            f"host speed: the trainer's inner products take {ratio:.2f}x the recorded host's time "
            "(a figure worse by about that much is the host, not the code)"
        )
    if worse:
        print(f"{len(worse)} figure(s) more than {CHECK_TOLERANCE:.0%} worse in CPU time: {', '.join(worse)}")
        return 1
    print(f"no CPU-time figure more than {CHECK_TOLERANCE:.0%} worse than recorded")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        return run(args)
    except (UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
