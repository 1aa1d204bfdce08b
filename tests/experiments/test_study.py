import json

import pytest

from experiments.study import LabelKind, StudyError, markdown_table, parse_kind, tables
from tests.experiments.test_labelgen import make_tiny_voc


def test_parse_kind():
    assert parse_kind("gt") == LabelKind("gt", "gt")
    assert parse_kind("noisy") == LabelKind("noisy@63.6", "noisy", target=pytest.approx(0.636))
    assert parse_kind("noisy@69.4").target == pytest.approx(0.694)
    assert parse_kind("noisy@0.694").name == "noisy@69.4"
    assert parse_kind("SEAM=/data/seam") == LabelKind("SEAM", "external", path="/data/seam")
    assert parse_kind("noisy@69.4").slug == "noisy-69.4"
    for bad in ("scribbles", "noisy@150", "=dir"):
        with pytest.raises(StudyError):
            parse_kind(bad)


def test_tables_have_the_papers_shape():
    kinds = [parse_kind(k) for k in ("gt", "scribble", "noisy@63.6")]
    quality = {
        "gt": {"miou": 1.0},
        "scribble": {"miou": 0.05, "coverage": 0.04, "precision": 1.0},
        "noisy@63.6": {"miou": 0.636, "coverage": 1.0, "precision": 0.9},
    }
    runs = [
        {"backbone": "b", "kind": k.name, "mode": m, "miou": 0.5 + 0.1 * i + (0.01 if m == "finetune" else 0)}
        for i, k in enumerate(kinds)
        for m in ("frozen", "finetune")
    ]
    t = tables(kinds, quality, runs, ("frozen", "finetune"))
    assert t["main"][0] == ["Method", "Backbone strategy", "gt", "scribble", "noisy@63.6"]
    assert t["main"][1] == ["Label quality (mIoU vs GT)", "-", "100.0", "5.0", "63.6"]
    assert t["main"][2] == ["b", "Freezing", "50.0", "60.0", "70.0"]
    assert t["main"][3] == ["b", "Tuning", "51.0", "61.0", "71.0"]
    assert t["main"][4] == ["Paper: DINOv2 ViT-B/14", "Freezing", "80.6", "80.1", "71.2"]
    assert t["frozen_vs_finetune"][1] == ["b", "gt", "50.0", "51.0"]
    md = markdown_table(t["main"])
    assert md.splitlines()[1] == "|---|---:|---:|---:|---:|"


def test_study_command_runs_and_resumes_the_grid(tmp_path, capsys):
    from cli.main import main

    root = make_tiny_voc(tmp_path / "voc", n_train=4, n_val=2, size=(42, 56))
    out = tmp_path / "study"
    argv = [
        "study",
        "--data",
        str(root),
        "--out",
        str(out),
        "--kinds",
        "gt",
        "scribble",
        "point",
        "noisy@63.6",
        "--modes",
        "frozen",
        "finetune",
        "--backbones",
        "dinov2_vits14",
        "--weights",
        "random",
        "--device",
        "cpu",
        "--iterations",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "42",
        "--base-long-side",
        "56",
        "--workers",
        "0",
        "--tolerance",
        "0.03",
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| dinov2_vits14 | Freezing |" in printed and "| dinov2_vits14 | Tuning |" in printed
    results = json.loads((out / "study.json").read_text())
    assert len(results["runs"]) == 8
    assert {(r["kind"], r["mode"]) for r in results["runs"]} == {
        (k, m) for k in ("gt", "scribble", "point", "noisy@63.6") for m in ("frozen", "finetune")
    }
    assert all(0 <= r["miou"] <= 1 for r in results["runs"])
    assert results["label_quality"]["noisy@63.6"]["miou"] == pytest.approx(0.636, abs=0.03)
    assert results["label_quality"]["scribble"]["precision"] == 1.0
    md = (out / "study.md").read_text()
    assert "Tables 1-3" in md and "Table 4" in md and "Label quality" in md
    assert (out / "study.png").stat().st_size > 1000
    assert (out / "runs" / "dinov2_vits14" / "scribble" / "finetune" / "backbone.safetensors").is_file()

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/result.json")}
    assert main(argv) == 0  # finished runs are reused, not retrained
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/result.json")} == stamps
    again = json.loads((out / "study.json").read_text())
    assert [r["miou"] for r in again["runs"]] == [r["miou"] for r in results["runs"]]


def test_study_rejects_bad_grids(tmp_path, capsys):
    from cli.main import main

    root = make_tiny_voc(tmp_path / "voc", n_train=2, n_val=1, size=(28, 28))
    rc = main(
        [
            "study",
            "--data",
            str(root),
            "--out",
            str(tmp_path / "s"),
            "--kinds",
            "gt",
            "MINE=" + str(tmp_path / "x"),
            "--weights",
            "random",
            "--backbones",
            "dinov2_vits14",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert rc == 1 and "not found" in capsys.readouterr().err


def test_study_compares_backbones_of_several_families_as_the_papers_table_3(tmp_path, capsys):
    """The same strategy over DINOv2 and DINO v1 (a 14-px and a 16-px patch: the crop fits both), one row each."""
    from cli.main import main

    root = make_tiny_voc(tmp_path / "voc", n_train=3, n_val=1, size=(42, 56))
    out = tmp_path / "study"
    argv = ["study", "--data", str(root), "--out", str(out), "--kinds", "gt", "--modes", "frozen"]
    argv += ["--backbones", "dinov2_vits14", "dino_vits16", "--weights", "random", "--device", "cpu"]
    argv += ["--iterations", "2", "--batch-size", "1", "--crop", "112", "--base-long-side", "112"]
    argv += ["--workers", "0", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| dinov2_vits14 | Freezing |" in printed and "| dino_vits16 | Freezing |" in printed
    assert "only with the real pretrained weights" in (out / "study.md").read_text()
