"""End to end: `python app.py train/evaluate/predict` on a tiny VOC-layout dataset with random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from core.labels import read_label_png, write_label_png


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBESEG_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _train(voc, labels, out, *extra):
    return main(
        [
            "train",
            "--data",
            str(voc),
            "--labels",
            str(labels),
            "--label-kind",
            "scribble",
            "--weights",
            "random",
            "--long-side",
            "112",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_train_evaluate_predict(tiny_voc, env, capsys):
    voc, labels = tiny_voc
    (labels / "img_002.png").unlink()  # images without labels are skipped with a warning
    assert _train(voc, labels, env / "head") == 0
    assert "1 of 3 images have no label file" in capsys.readouterr().out
    meta = json.loads((env / "head" / "head.json").read_text())
    assert meta["backbone"] == "dinov2_vits14" and meta["classes"] == ["background", "red", "blue"]
    assert meta["weights_id"].startswith("random") and meta["long_side"] == 112
    assert set(meta["train"]["labelled_pixels"]) == {"red", "blue"}
    assert (env / "head" / "head.safetensors").is_file()

    assert main(["evaluate", "--data", str(voc), "--head", str(env / "head")]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "red" in out and "Traceback" not in out
    scores = json.loads((env / "head" / "eval-val.json").read_text())
    # Two flat colours are separable even for random ViT features: the head must find them.
    assert scores["miou"] > 0.9

    assert (
        main(
            [
                "predict",
                "--head",
                str(env / "head"),
                "--images",
                str(voc / "JPEGImages"),
                "--out",
                str(env / "pred"),
                "--coco",
                str(env / "pred.json"),
            ]
        )
        == 0
    )
    from pycocotools.coco import COCO

    api = COCO(str(env / "pred.json"))  # the predictions as COCO: objects only, each mask equal to the PNG's
    assert [c["name"] for c in api.loadCats(api.getCatIds())] == ["red", "blue"]
    for im in api.loadImgs(api.getImgIds()):
        png = read_label_png(env / "pred" / im["file_name"].replace(".jpg", ".png"))
        for ann in api.loadAnns(api.getAnnIds(imgIds=[im["id"]])):
            np.testing.assert_array_equal(api.annToMask(ann).astype(bool), png == ann["category_id"] - 1)
        assert len(api.getAnnIds(imgIds=[im["id"]])) == len(set(np.unique(png)) - {0})
    pred = read_label_png(env / "pred" / "img_003.png")
    gt = read_label_png(voc / "SegmentationClass" / "img_003.png")
    assert pred.shape == gt.shape
    assert (pred[gt != 255] == gt[gt != 255]).mean() > 0.9
    assert Image.open(env / "pred" / "img_003.png").mode == "P"


def test_dense_labels_and_cached_features(tiny_voc, env):
    voc, _ = tiny_voc
    assert (
        _train(voc, voc / "SegmentationClass", env / "h1", "--label-kind", "dense", "--max-pixels", "2000")
        == 0
    )
    assert any((env / "cache").rglob("*.safetensors"))
    assert (
        _train(voc, voc / "SegmentationClass", env / "h2", "--label-kind", "dense", "--max-pixels", "2000")
        == 0
    )
    a = (env / "h1" / "head.safetensors").read_bytes()
    assert a == (env / "h2" / "head.safetensors").read_bytes()  # deterministic, from cache or not


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert needle in err, err
    return err


def test_bad_inputs_give_one_clear_line(tiny_voc, env, capsys):
    voc, labels = tiny_voc
    assert _train(env / "missing", labels, env / "h") == 1
    _one_line_error(capsys, "dataset folder not found")

    bad = np.full((5, 5), 255, np.uint8)
    write_label_png(labels / "img_001.png", bad)
    assert _train(voc, labels, env / "h") == 1
    _one_line_error(capsys, "img_001.png: label map is 5x5")

    lab = read_label_png(voc / "scribbles" / "img_000.png")
    lab[0, 0] = 7
    write_label_png(labels / "img_001.png", np.full((67, 85), 255, np.uint8))
    write_label_png(labels / "img_000.png", lab)
    assert _train(voc, labels, env / "h") == 1
    _one_line_error(capsys, "img_000.png: class index 7 is not one of the 3 classes")

    lab[0, 0] = 255
    write_label_png(labels / "img_000.png", lab)
    (voc / "JPEGImages" / "img_002.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert _train(voc, labels, env / "h") == 1
    _one_line_error(capsys, "img_002.jpg: not an image in a format probeseg reads")

    for f in labels.iterdir():
        f.unlink()
    assert _train(voc, labels, env / "h") == 1
    _one_line_error(capsys, "none of the 3 images of split 'train' has a label PNG")

    assert main(["evaluate", "--data", str(voc), "--head", str(env / "nohead")]) == 1
    _one_line_error(capsys, "no head here")


def test_simulate_writes_the_json_the_plot_and_the_table(tiny_voc, env, capsys):
    voc, _ = tiny_voc
    out = env / "sim"
    assert (
        main(
            [
                "simulate",
                "--data",
                str(voc),
                "--strategy",
                "random",
                "error",
                "--budget",
                "3",
                "--stroke-px",
                "8",
                "--weights",
                "random",
                "--long-side",
                "56",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| strategy | strokes to 90 % | strokes to 95 % |" in printed and "| error |" in printed
    result = json.loads((out / "simulation.json").read_text())
    assert set(result) >= {"full_label_miou", "strategies"} and 0 <= result["full_label_miou"] <= 1
    assert set(result["strategies"]) == {"random", "error"}
    for run in result["strategies"].values():
        assert set(run) == {"strokes_to_90", "strokes_to_95", "curve"}
        assert [p["strokes"] for p in run["curve"]] == [1, 2, 3]
        assert all(set(p) == {"strokes", "labelled_px", "seconds", "miou"} for p in run["curve"])
    assert Image.open(out / "simulation.png").size[0] > 500


def test_predict_and_features_sharded_under_torchrun_equal_one_process(tiny_voc, env):
    """2 CPU ranks (gloo) split the images, each writes its PNGs, rank 0 merges the COCO file and the summary:
    the same files as one process. `--resume` skips what is there; `features` fills the same cache."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    voc, labels = tiny_voc
    assert _train(voc, labels, env / "head") == 0
    images = voc / "JPEGImages"
    for i in range(10, 14):  # more images than ranks, and an odd number of them
        flipped = Image.open(images / f"img_00{i - 10}.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flipped.save(images / f"img_{i:03d}.jpg")
    n = len(list(images.glob("*.jpg")))
    assert n % 2 == 1
    args = ["--head", str(env / "head"), "--images", str(images), "--no-cache"]
    assert main(["predict", *args, "--out", str(env / "one"), "--coco", str(env / "one.json")]) == 0
    root = Path(__file__).resolve().parents[2]
    run = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(root / "app.py"),
    ]
    envs = dict(os.environ, PROBESEG_CACHE=str(env / "cache2"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [*run, "predict", *args, "--out", str(env / "two"), "--coco", str(env / "two.json")],
        capture_output=True,
        text=True,
        env=envs,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    pngs = sorted(p.name for p in (env / "one").glob("*.png"))
    assert len(pngs) == n and pngs == sorted(p.name for p in (env / "two").glob("*.png"))
    for name in pngs:
        assert (env / "one" / name).read_bytes() == (env / "two" / name).read_bytes()
    assert (env / "one.json").read_bytes() == (env / "two.json").read_bytes()
    summary = json.loads((env / "two" / "summary.json").read_text())
    assert (summary["images"], summary["predicted"], summary["ranks"]) == (n, n, 2)
    (env / "two" / "img_011.png").unlink()  # a stopped run: --resume predicts only what is missing
    again = subprocess.run(
        [*run, "predict", *args, "--resume", "--out", str(env / "two"), "--coco", str(env / "two.json")],
        capture_output=True,
        text=True,
        env=envs,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((env / "two" / "summary.json").read_text())["predicted"] == 1
    assert (env / "one" / "img_011.png").read_bytes() == (env / "two" / "img_011.png").read_bytes()
    feats = subprocess.run(
        [*run, "features", "--images", str(images), "--weights", "random", "--long-side", "112"],
        capture_output=True,
        text=True,
        env=envs,
        timeout=600,
    )
    assert feats.returncode == 0, feats.stdout + feats.stderr
    assert (
        f"features of {n} images" in feats.stdout and len(list((env / "cache2").rglob("*.safetensors"))) == n
    )
