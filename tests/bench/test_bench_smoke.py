"""Smoke test of the benchmark machinery on the `tiny` preset: it runs every part (the canvas and scale parts,
which need chromium, in tests of their own), then checks the report files and table structure.

Never asserts a timing: the numbers of a tiny run mean nothing, and this machine is shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import synth
from bench.config import PARTS, TINY
from bench.report import Report
from bench.run import build_parser, parse_parts, run_benchmarks
from core.labels import IGNORE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> tuple[Report, Path]:
    out = tmp_path_factory.mktemp("bench")
    parts = ["trainer", "dense", "features", "memory", "soak", "active"]
    report = run_benchmarks(TINY, parts, out, echo=False)
    return report, out


def test_report_files_and_json_structure(tiny_report):
    report, out = tiny_report
    for name in ("report.json", "report.md", "report.txt"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    data = json.loads((out / "report.json").read_text())
    assert data["mode"] == "tiny"
    for key in ("cpu_model", "logical_cores", "torch_version", "device", "load_average_end"):
        assert key in data["machine"]
    speed = data["machine"]["host_speed"]  # the host's own speed, to tell hosts apart from code changes
    assert speed["skinny_eval_us"] > 0 and speed["sgemm_512_ms"] > 0
    assert "us per skinny product pair" in (out / "report.md").read_text()
    assert data["config"]["parts"] == ["trainer", "dense", "features", "memory", "soak", "active"]
    keys = {s["key"] for s in data["sections"]}
    assert {
        "retrain_time",
        "retrain_quality",
        "interactive",
        "dense",
        "soak",
        "features_cpu",
        "features_gpu",
        "memory",
        "active",
    } <= keys
    assert not any(k.endswith("_error") for k in keys), [
        s["skipped"] for s in data["sections"] if s["skipped"]
    ]
    for s in data["sections"]:
        assert s["rows"] or s["skipped"], s["key"]
        for row in s["rows"]:
            assert len(row) == len(s["columns"]), s["key"]
    for t in data["targets"]:
        assert set(t) == {"name", "goal", "measured", "met", "detail"}
        assert t["met"] in (True, False, None)


def test_tables_cover_the_configured_grid(tiny_report):
    report, _ = tiny_report
    times = next(s for s in report.sections if s.key == "retrain_time")
    cells = {(r["dim"], r["labelled_pixels"]) for r in times.records}
    assert cells == {(d, n) for d in TINY.dims for n in TINY.pixel_counts}
    # The literal Eq. 1 ran where configured and reached the trainer's loss (the exactness the bench relies on).
    lit = [r for r in times.records if "literal" in r]
    assert [(r["dim"], r["labelled_pixels"]) for r in lit] == list(TINY.literal_cells)
    for r in lit:
        assert r["literal_loss_of_trainer_head"] == pytest.approx(r["trainer_loss"], rel=1e-4)
    for r in lit:  # interleaved: as many baseline runs as trainer runs, one CPU ratio per round
        assert r["literal"]["rounds"] == len(r["literal"]["ratios"]) == r["literal"]["b"]["n"] >= 1
        assert r["literal_ratio"] > 0
    for r in times.records:
        assert r["trainer"]["n"] >= 1 and r["trainer"]["median_s"] > 0 and r["trainer"]["cpu_median_s"] > 0
        assert 0.0 <= r["miou_trainer"] <= 1.0
    inter = next(s for s in report.sections if s.key == "interactive").records
    assert {r["fit"] for r in inter} == {
        "first fit",
        "refit after one stroke",
        "same problem, no cache, cold",
    }
    refit = next(r for r in inter if r["fit"] == "refit after one stroke")
    cold = next(r for r in inter if r["fit"] == "same problem, no cache, cold")
    assert refit["labelled_pixels"] == cold["labelled_pixels"]
    # Same problem (tiny's 20 L-BFGS iterations stop short of full convergence, hence the loose tolerance).
    assert refit["loss"] == pytest.approx(cold["loss"], rel=0.05)
    active = next(s for s in report.sections if s.key == "active").records
    assert [r["dataset"] for r in active] == [
        "synthetic tokens",
        "VOC-like tokens",
        "VOC layout (random ViT)",
    ]
    for r in active:
        assert set(r["median_strokes_to_95"]) == {"random", "uncertainty", "error", "refine"}
        assert 0 < r["full_label_miou"] <= 1
    mem = next(s for s in report.sections if s.key == "memory").records[0]
    assert mem["images"] == TINY.memory_images and mem["misses_serving"] == 0
    assert mem["lru_max_seen"] <= mem["lru_bound"]
    soak = {
        t.name: t for t in report.targets if t.name.startswith(("hostile", "SIGKILL")) or "writers" in t.name
    }
    assert len(soak) == 4 and all(t.met is True for t in soak.values()), soak  # 0 internals, 0 errors, 0 lost
    gpu = next(s for s in report.sections if s.key == "features_gpu")
    assert gpu.rows or "no CUDA" in (gpu.skipped or "")


def test_markdown_and_text_render_every_section(tiny_report):
    report, out = tiny_report
    md = (out / "report.md").read_text()
    text = (out / "report.txt").read_text()
    assert "## Machine" in md and "## Targets" in md
    for s in report.sections:
        assert s.title in md and s.title in text
        if s.rows:
            assert "| " + " | ".join(s.columns) + " |" in md


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium missing")
def test_canvas_part_drives_the_page_and_loses_nothing(tmp_path):
    report = run_benchmarks(TINY, ["canvas"], tmp_path, echo=False)
    [section] = report.sections
    assert section.key == "canvas" and not section.skipped, section.skipped
    fig = report.figures["canvas"]
    for key in (
        "op_ack_p50_ms",
        "browser_stroke_to_overlay_p50_ms",
        "browser_stroke_to_overlay_p95_ms",
        "browser_stroke_to_overlay_p50_ms_20_images",
        "toggle_repaint_ms",
        "bytes_per_stroke",
        "concurrent_lost_ops",
        "load_average_start",
    ):
        assert key in fig, key
    assert fig["strokes"] == TINY.canvas_strokes and fig["concurrent_acked_ops"] > 0
    assert (
        fig["concurrent_lost_ops"] == 0 and fig["concurrent_errors"] == 0 and fig["toggle_server_calls"] == 0
    )
    assert all(t.met is not None for t in report.targets)


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium missing")
def test_scale_part_times_strokes_the_page_and_sharded_predict(tmp_path):
    report = run_benchmarks(TINY, ["scale"], tmp_path, echo=False)
    keys = [s.key for s in report.sections]
    assert keys == ["scale_setup", "scale_strokes", "scale_concurrent", "scale_page", "scale_batch"], [
        s.skipped for s in report.sections
    ]
    fig = report.figures["scale"]
    for level in TINY.scale_levels:
        rec = fig[f"labelled_{level}"]
        assert rec["first_p50_s"] is not None and rec["no_prediction"] == 0  # every stroke saw a prediction
        assert rec["final_p50_s"] >= rec["first_p50_s"] and rec["cold_fit_s"] > 0
    assert fig["concurrent"]["errors"] == 0 and fig["concurrent"]["acked"] > 0
    assert len(fig["page"]["switch_s"]) == TINY.scale_switches and fig["page"]["first_usable_s"] > 0
    assert fig["batch"]["same"] is True  # torchrun's 2 ranks wrote what one process writes
    assert fig["rss_end"] > 0


def test_synthetic_labels_are_exact_and_truthful():
    gts = [synth.make_gt(64, 64, 3, s) for s in range(2)]
    for total in (40, 1_500):
        labels = synth.labels_with_count(gts, total, seed=1)
        assert sum(int((lab != IGNORE).sum()) for lab in labels) == total
        for gt, lab in zip(gts, labels, strict=True):
            on = lab != IGNORE
            np.testing.assert_array_equal(lab[on], gt[on])


def test_voc_like_scenes_have_a_dominant_background_and_a_few_objects():
    model = synth.ModeModel.create(5, 16, seed=3)
    assert set(model.mode_class.tolist()) == set(range(5))
    for c in range(5):  # each class's look frequencies sum to 1, the first look the most common
        w = model.mode_weight[model.mode_class == c]
        assert w.sum() == pytest.approx(1.0) and w[0] == w.max()
    for seed in range(4):
        gt, feats = synth.make_voc_like(112, model, seed, long_side=112)
        share = np.bincount(gt.ravel(), minlength=5) / gt.size
        assert 0.4 < share[0] < 0.97 and 1 <= np.count_nonzero(share[1:]) <= 3
        assert feats.grid == (8, 8) and feats.original_size == (112, 112) and feats.dim == 16


def test_parts_and_cli_wiring():
    assert parse_parts("memory,trainer") == ["trainer", "memory"]
    with pytest.raises(ValueError):
        parse_parts("trainer,nope")
    args = build_parser().parse_args(["--quick", "--parts", ",".join(PARTS)])
    assert args.quick
    from cli.main import build_parser as app_parser

    app_args = app_parser("bench").parse_args(
        ["bench", "--preset", "tiny", "--parts", "dense", "--no-results"]
    )
    assert app_args.func.__module__ == "cli.bench"
    help_text = " ".join(build_parser().format_help().split())  # formats at all: a bare % once broke --help
    assert "more than 25% worse" in help_text


def test_module_entry_point_writes_reports_not_results(tmp_path):
    results = REPO / "bench" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--preset", "tiny", "--parts", "dense", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "== Targets" in proc.stdout and "2. Dense masks" in proc.stdout
    assert (tmp_path / "report.json").is_file()
    assert (results.read_text() if results.exists() else None) == before  # only full runs update RESULTS.md


def test_check_records_then_flags_a_figure_that_got_worse(tmp_path, monkeypatch, capsys):
    import json

    from bench import run as bench_run

    results = tmp_path / "RESULTS.json"
    results.write_text(json.dumps({"trainer": {"kept": True}}))
    monkeypatch.setattr(bench_run, "RESULTS_JSON", results)
    monkeypatch.setitem(bench_run.PRESETS, "quick", TINY)
    args = build_parser().parse_args(["--check", "--record", "--out", str(tmp_path / "out")])
    assert bench_run.run(args) == 0
    data = json.loads(results.read_text())
    assert data["trainer"] == {"kept": True}  # other keys untouched
    figures = data["check"]["cpu_figures_s"]
    assert {f"trainer 32-d {n} px" for n in TINY.pixel_counts} <= set(figures) and "first fit 32-d" in figures
    # Pretend the recorded figures were ten times faster: every figure is now flagged.
    data["check"]["cpu_figures_s"] = {k: v / 10 for k, v in figures.items()}
    results.write_text(json.dumps(data))
    assert bench_run.run(build_parser().parse_args(["--check", "--out", str(tmp_path / "out")])) == 1
    printed = capsys.readouterr().out
    assert "WORSE" in printed and "host speed: the trainer's inner products take" in printed


def test_resolution_part_scores_every_setting_at_every_size(tmp_path):
    report = run_benchmarks(TINY, ["resolution"], tmp_path, echo=False)
    assert not [t for t in report.targets if t.name.endswith("part ran")]
    rows = report.figures["resolution"]["rows"]
    assert len(rows) == 2 * 2 * len(TINY.resolution_scales)  # fixed long side / auto, bilinear / edges
    for r in rows:
        assert 0 <= r["miou"] <= 1 and 0 <= r["boundary_f1"] <= 1 and r["cache_bytes"] > 0
        assert r["cpu_s_per_mp"] > 0 and r["bare_cpu_s_per_mp"] > 0


def test_boundary_f1_counts_boundaries_within_the_tolerance():
    from bench.resolution import boundary_f1

    gt = np.zeros((40, 60), np.uint8)
    gt[:, 30:] = 1
    near, far = np.zeros_like(gt), np.zeros_like(gt)
    near[:, 32:] = 1  # 2 px off: within 3 px
    far[:, 40:] = 1  # 10 px off
    assert boundary_f1(gt, gt) == 1.0 and boundary_f1(near, gt) == 1.0 and boundary_f1(far, gt) == 0.0
