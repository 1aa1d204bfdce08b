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

import torch


@dataclass
class Timing:
    """Wall-clock seconds of the measured runs (warm-up excluded)."""

    runs: list[float] = field(default_factory=list)
    warmup: bool = True  # whether a warm-up run preceded the measured ones
    capped: bool = False  # True when the time budget stopped the repeats early
    other_load: list[float] = field(default_factory=list)  # cores busy with other processes, per run

    @property
    def other_cores(self) -> float | None:
        """Median over the runs of the CPU cores other processes kept busy (None where unmeasurable)."""
        return statistics.median(self.other_load) if self.other_load else None

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def n(self) -> int:
        return len(self.runs)

    def to_dict(self) -> dict:
        return {
            "median_s": self.median,
            "runs_s": [round(r, 6) for r in self.runs],
            "n": self.n,
            "warmup": self.warmup,
            "capped_by_budget": self.capped,
            "other_load_cores": [round(x, 2) for x in self.other_load],
        }


def measure(fn: Callable[[], Any], repeats: int, warmup: bool = True, budget_s: float | None = None) -> tuple[Timing, Any]:
    """Run fn once to warm up (caches, allocator, lazy init), then up to `repeats` timed runs; stop early
    (after at least one) once the timed runs have used `budget_s`. Returns the timing and the last result."""
    timing = Timing(warmup=warmup)
    result = fn() if warmup else None
    for i in range(max(1, repeats)):
        before = cpu_snapshot()
        start = time.perf_counter()
        result = fn()
        timing.runs.append(time.perf_counter() - start)
        other = other_cores_since(before)
        if other is not None:
            timing.other_load.append(other)
        if budget_s is not None and sum(timing.runs) >= budget_s and i + 1 < repeats:
            timing.capped = True
            break
    return timing, result


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall, all processes' busy CPU seconds, this process's CPU seconds incl. waited-for children)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    busy = sum(ticks[:3]) + sum(ticks[5:8])
    t = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), t.user + t.system + t.children_user + t.children_system


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


def machine_info() -> dict:
    """What the numbers depend on: CPU, cores, threads, torch, device, load at the start."""
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
