"""Timing and machine description: medians over repeats after a warm-up, and where the numbers came from."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Timing:
    """Wall-clock and CPU seconds of the measured runs (warm-up excluded)."""

    runs: list[float] = field(default_factory=list)  # wall seconds
    warmup: bool = True  # whether a warm-up run preceded the measured ones
    capped: bool = False  # True when the time budget stopped the repeats early
    other_load: list[float] = field(default_factory=list)  # cores busy with other processes, per run
    cpu_runs: list[float] = field(default_factory=list)  # this process's CPU seconds (children included)

    @property
    def other_cores(self) -> float | None:
        """Median over the runs of the CPU cores other processes kept busy (None where unmeasurable)."""
        return statistics.median(self.other_load) if self.other_load else None

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def cpu(self) -> float:
        """Median CPU seconds: what the work costs, largely independent of what else the machine runs."""
        return statistics.median(self.cpu_runs) if self.cpu_runs else float("nan")

    @property
    def cpu_spread(self) -> float:
        """(max - min) / median of the CPU runs: how much the repeats disagree."""
        return _spread(self.cpu_runs)

    @property
    def n(self) -> int:
        return len(self.runs)

    def add(self, wall: float, cpu: float, other: float | None) -> None:
        self.runs.append(wall)
        self.cpu_runs.append(cpu)
        if other is not None:
            self.other_load.append(other)

    def to_dict(self) -> dict:
        return {
            "median_s": self.median,
            "cpu_median_s": self.cpu,
            "cpu_spread": self.cpu_spread,
            "runs_s": [round(r, 6) for r in self.runs],
            "cpu_runs_s": [round(r, 6) for r in self.cpu_runs],
            "n": self.n,
            "warmup": self.warmup,
            "capped_by_budget": self.capped,
            "other_load_cores": [round(x, 2) for x in self.other_load],
        }


def _spread(xs: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    med = statistics.median(xs)
    return (max(xs) - min(xs)) / med if med > 0 else float("nan")


def process_cpu() -> float:
    """CPU seconds of this process and of its finished, waited-for children, at microsecond resolution
    (os.times() counts in 10 ms clock ticks: too coarse for fits of tens of milliseconds)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, float | None, Any]:
    """Run fn once: (wall s, CPU s, other processes' busy cores meanwhile, result). A result that is a
    dict with "wall_s" and "cpu_s" timed its own work (e.g. a fit in a child process, without the child's
    start-up): those figures are used instead."""
    before = cpu_snapshot()
    cpu0, start = process_cpu(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - start, process_cpu() - cpu0
    if isinstance(result, dict) and "cpu_s" in result and "wall_s" in result:
        wall, cpu = float(result["wall_s"]), float(result["cpu_s"])
    return wall, cpu, other_cores_since(before), result


def measure(
    fn: Callable[[], Any], repeats: int, warmup: bool = True, budget_s: float | None = None
) -> tuple[Timing, Any]:
    """Run fn once to warm up (caches, allocator, lazy init), then up to `repeats` timed runs; stop early
    (after at least one) once the timed runs have used `budget_s`. Returns the timing and the last result."""
    timing = Timing(warmup=warmup)
    result = fn() if warmup else None
    for i in range(max(1, repeats)):
        wall, cpu, other, result = timed(fn)
        timing.add(wall, cpu, other)
        if budget_s is not None and sum(timing.runs) >= budget_s and i + 1 < repeats:
            timing.capped = True
            break
    return timing, result


@dataclass
class Comparison:
    """Two ways of doing the same work, run alternately (A, B, A, B, ...) in one process after a warm-up
    of each, so that load from other jobs hits both alike. The ratio is B / A in CPU time, per round."""

    a: Timing
    b: Timing
    ratios: list[float] = field(default_factory=list)  # per round: CPU of B / CPU of A
    stable: bool = False  # the ratio's spread fell below the goal before the budget ran out

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def spread(self) -> float:
        return _spread(self.ratios)

    def to_dict(self) -> dict:
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "cpu_ratio": self.ratio,
            "ratio_spread": self.spread,
            "rounds": len(self.ratios),
            "ratios": [round(r, 3) for r in self.ratios],
            "stable": self.stable,
        }


def interleave(
    a: Callable[[], Any],
    b: Callable[[], Any],
    min_rounds: int = 3,
    max_rounds: int = 9,
    budget_s: float = 60.0,
    spread_goal: float = 0.2,
    a_per_round: int = 1,
) -> tuple[Comparison, Any, Any]:
    """Alternate a and b until the per-round CPU ratio's spread ((max - min) / median) is at most
    `spread_goal` after `min_rounds`, or `max_rounds` or the wall budget is used up (`stable` False then).
    `a_per_round` > 1 times a fast `a` that many times per round (its median stands for the round).
    Returns the comparison and each side's last result."""
    ra, rb = a(), b()  # warm-up of each, untimed
    cmp = Comparison(Timing(), Timing(warmup=True))
    start = time.perf_counter()
    for i in range(max_rounds):
        walls, cpus = [], []
        for _ in range(a_per_round):
            wall, cpu, other, ra = timed(a)
            cmp.a.add(wall, cpu, other)
            walls.append(wall)
            cpus.append(cpu)
        wall, cpu, other, rb = timed(b)
        cmp.b.add(wall, cpu, other)
        cmp.ratios.append(cpu / max(statistics.median(cpus), 1e-9))
        if i + 1 >= min_rounds and cmp.spread <= spread_goal:
            cmp.stable = True
            break
        if time.perf_counter() - start >= budget_s:
            break
    cmp.a.capped = cmp.b.capped = not cmp.stable
    return cmp, ra, rb


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall, all processes' busy CPU seconds, this process's CPU seconds incl. waited-for children)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    busy = sum(ticks[:3]) + sum(ticks[5:8])
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), process_cpu()


def other_cores_since(before: tuple[float, float, float] | None) -> float | None:
    """Average number of CPU cores that other processes kept busy since `before` (noise indicator)."""
    after = cpu_snapshot()
    if before is None or after is None or after[0] - before[0] < 0.05:
        return None
    other = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, other / (after[0] - before[0]))


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def host_speed(repeats: int = 5) -> dict:
    """The host's own speed on the trainer's inner work, so runs on different hosts can be told apart from a
    change in the code: single-thread CPU time of the two skinny products of one loss evaluation on 1,000
    labelled pixels (a [1000, 384] x [384, 5] product and its transpose), and of a 512^3 float32 product.
    Virtual machines of one kind differ by up to 2x per core (memory bandwidth, neighbours on the host)."""
    import torch

    g = torch.Generator().manual_seed(0)
    rows, w = torch.randn(1000, 384, generator=g), torch.randn(5, 384, generator=g)
    a, b = torch.randn(512, 512, generator=g), torch.randn(512, 512, generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:

        def skinny() -> None:
            for _ in range(200):
                u = rows @ w.T
                u.T @ rows

        def square() -> None:
            for _ in range(10):
                a @ b

        out = {}
        for name, work, per, unit in (
            ("skinny_eval_us", skinny, 200, 1e6),
            ("sgemm_512_ms", square, 10, 1e3),
        ):
            work()  # warm-up
            times = []
            for _ in range(repeats):
                t = time.process_time()
                work()
                times.append((time.process_time() - t) / per)
            out[name] = round(statistics.median(times) * unit, 2)
        return out
    finally:
        torch.set_num_threads(threads)


def machine_info() -> dict:
    """What the numbers depend on: CPU, cores, threads, torch, device, load at the start, the host's speed."""
    import torch  # here, not at the top: `bench --help` imports this module and needs no torch

    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda_available": torch.cuda.is_available(),
        "device": "cpu",
        "gpu": None,
        "load_average_start": load_average(),
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "host_speed": host_speed(),
    }
    try:
        mem = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                mem[key] = int(value.split()[0]) * 1024
        info["memory_total_bytes"] = mem.get("MemTotal")
    except OSError:
        info["memory_total_bytes"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def rss_bytes(pid: int | str = "self") -> tuple[int | None, int | None]:
    """(current RSS, peak RSS) of a process from /proc (Linux), in bytes; None where unavailable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values.get("VmRSS"), values.get("VmHWM")
