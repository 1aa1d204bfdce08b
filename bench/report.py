"""The benchmark report: sections (a table, notes, raw records) and targets, rendered as an aligned text
table for stdout, Markdown and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: None -> '-', floats to ~3 significant digits, everything else str()."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        a = abs(value)
        if a >= 100:
            return f"{value:,.0f}"
        if a >= 10:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        if a == 0:
            return "0"
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}x"


def seconds(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f} MiB"


@dataclass
class Target:
    name: str  # what is being judged, e.g. "retrain 100k px, 384-d"
    goal: str  # the threshold in words, e.g. "< 1 s"
    measured: str  # the number, formatted
    met: bool | None  # None: not measured in this run (skipped)
    detail: str = ""  # by how much it was missed, or why it was skipped


@dataclass
class Section:
    key: str
    title: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # raw numbers for the JSON report
    skipped: str | None = None  # a one-line reason when the whole section could not run

    def add_row(self, cells: list[Any], record: dict | None = None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.key}: row has {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([c if isinstance(c, str) else fmt(c) for c in cells])
        if record is not None:
            self.records.append(record)


@dataclass
class Report:
    machine: dict
    config: dict
    sections: list[Section] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    seconds: float | None = None
    mode: str = "full"
    part_seconds: dict[str, float] = field(default_factory=dict)
    # part -> ((first section, first target), (end section, end target)) indices it added
    part_items: dict[str, tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    figures: dict[str, dict] = field(default_factory=dict)  # part -> named figures for RESULTS.json

    def section(self, key: str, title: str, columns: list[str]) -> Section:
        s = Section(key=key, title=title, columns=list(columns))
        self.sections.append(s)
        return s

    def target(self, name: str, goal: str, measured: str, met: bool | None, detail: str = "") -> Target:
        t = Target(name, goal, measured, met, detail)
        self.targets.append(t)
        return t

    def verdict(self, t: Target) -> str:
        v = _verdict(t.met)
        return v if self.mode == "full" or t.met is None else v.lower() + "*"

    # -- rendering ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "seconds": self.seconds,
            "part_seconds": self.part_seconds,
            "machine": self.machine,
            "config": self.config,
            "targets": [asdict(t) for t in self.targets],
            "sections": [asdict(s) for s in self.sections],
        }

    def to_json(self) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=2, sort_keys=False)

    def to_text(self) -> str:
        out = []
        for s in self.sections:
            out.append(f"== {s.title}")
            if s.skipped:
                out.append(f"   skipped: {s.skipped}")
            if s.rows:
                out.extend("   " + line for line in _aligned(s.columns, s.rows))
            out.extend(f"   * {n}" for n in s.notes)
            out.append("")
        out.append("== Targets" + ("" if self.mode == "full" else f" ({SCALED_NOTE})"))
        rows = [[t.name, t.goal, t.measured, self.verdict(t), t.detail] for t in self.targets]
        out.extend(
            "   " + line for line in _aligned(["target", "goal", "measured", "verdict", "detail"], rows)
        )
        return "\n".join(out)

    def to_markdown(self, title: str = "probeseg benchmarks") -> str:
        m = self.machine
        lines = [f"# {title}", ""]
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in self.part_seconds.items())
        lines.append(
            f"Mode: **{self.mode}**, run {m.get('date_utc')} at commit `{m.get('git_commit')}`"
            f"{' (uncommitted changes)' if m.get('git_dirty') else ''}, took {fmt(self.seconds)} s ({parts})."
        )
        lines += ["", "## Machine", ""]
        lines.append(
            f"- CPU: {m.get('cpu_model')}, {m.get('logical_cores')} logical cores, "
            f"torch threads {m.get('torch_threads')}"
        )
        lines.append(f"- Host speed: {host_speed_text(m)}")
        total = m.get("memory_total_bytes")
        if total:
            lines.append(f"- Memory: {total / 2**30:.1f} GiB")
        lines.append(f"- torch {m.get('torch_version')}, Python {m.get('python')}, {m.get('platform')}")
        gpu = m.get("gpu")
        lines.append(
            f"- Device: {m.get('device')}" + (f" (GPU: {gpu})" if gpu else " (no CUDA GPU in this run)")
        )
        lines.append(
            f"- Load average at start {m.get('load_average_start')}, at end {m.get('load_average_end')} "
            "(other jobs share this machine; every comparison is a ratio measured in the same run)"
        )
        lines += ["", "## Targets", ""]
        if self.mode != "full":
            lines += [f"*{SCALED_NOTE}*", ""]
        lines += _md_table(
            ["target", "goal", "measured", "verdict", "detail"],
            [[t.name, t.goal, t.measured, self.verdict(t), t.detail] for t in self.targets],
        )
        lines += sections_markdown(self.sections)
        return "\n".join(lines).rstrip() + "\n"

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "report.json", "markdown": out / "report.md", "text": out / "report.txt"}
        paths["json"].write_text(self.to_json() + "\n")
        paths["markdown"].write_text(self.to_markdown())
        paths["text"].write_text(self.to_text() + "\n")
        return paths


def sections_markdown(sections: list[Section], level: str = "##") -> list[str]:
    lines: list[str] = []
    for s in sections:
        lines += ["", f"{level} {s.title}", ""]
        if s.skipped:
            lines += [f"**Skipped:** {s.skipped}", ""]
        if s.rows:
            lines += _md_table(s.columns, s.rows)
            lines.append("")
        lines += [f"- {n}" for n in s.notes]
    return lines


def results_markdown(data: dict[str, Any], order: tuple[str, ...], notes: str = "") -> str:
    """bench/RESULTS.md from bench/RESULTS.json: every part as of its latest full run, with that run's
    date, commit, machine and load (parts may come from different runs), then the hand-written notes."""
    lines = [
        "# probeseg benchmark results",
        "",
        "Each part as of its latest full-size run (`python -m bench [--parts ...]`); this file is generated from "
        "bench/RESULTS.json, and the hand-written reading at the end comes from bench/NOTES.md.",
        "",
    ]
    parts = [p for p in order if p in data]
    rows = []
    for part in parts:
        for t in data[part].get("targets", []):
            rows.append([part, t["name"], t["goal"], t["measured"], _verdict(t["met"]), t["detail"]])
    lines += ["## Targets", ""] + _md_table(["part", "target", "goal", "measured", "verdict", "detail"], rows)
    for part in parts:
        entry = data[part]
        m = entry.get("machine", {})
        lines += [
            "",
            f"## Part `{part}`",
            "",
            f"Run {m.get('date_utc')} at commit `{m.get('git_commit')}`"
            f"{' (uncommitted changes)' if m.get('git_dirty') else ''}, took {fmt(entry.get('seconds'))} s on "
            f"{m.get('cpu_model')} ({m.get('logical_cores')} logical cores, torch threads "
            f"{m.get('torch_threads')}, torch {m.get('torch_version')}, device {m.get('device')}); load average "
            f"{m.get('load_average_start')} at the start, {m.get('load_average_end')} at the end; host speed "
            f"{host_speed_text(m)}.",
        ]
        sections = [
            Section(**{k: v for k, v in sec.items() if k in Section.__dataclass_fields__})
            for sec in entry.get("sections", [])
        ]
        lines += sections_markdown(sections, "###")
    if notes.strip():
        lines += ["", notes.strip()]
    return "\n".join(lines).rstrip() + "\n"


SCALED_NOTE = "scaled-down run: the targets are set for the full sizes, verdicts here are only indicative"


def _verdict(met: bool | None) -> str:
    return "MET" if met else ("not measured" if met is None else "MISSED")


def _aligned(columns: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    def esc(x: Any) -> str:
        return str(x).replace("|", "\\|")

    out = ["| " + " | ".join(esc(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out


def json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def host_speed_text(machine: dict) -> str:
    """bench.timing.host_speed's figures in words (older records have none)."""
    hs = machine.get("host_speed")
    if not hs:
        return "not recorded"
    return (
        f"{hs['skinny_eval_us']:.0f} us per skinny product pair (1,000 x 384 x 5), {hs['sgemm_512_ms']:.2f} ms "
        "per 512^3 sgemm (one thread; lower is faster)"
    )
