import argparse
import json
import math
import os
import socket
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cli.protocol_args import add_protocol_arguments, protocol_config_from_args
from core.backbone import load_backbone
from core.backbones import get_spec
from core.head import load_head
from core.labels import IGNORE
from core.voc import VocDataset
from experiments.checkpoints import CHECKPOINT_FILE
from experiments.config import ProtocolConfig, ProtocolError
from experiments.data import CropDataset, augment
from experiments.protocol import BACKBONE_FILE, Segmenter, evaluate_model, train_protocol
from tests.experiments.test_labelgen import make_tiny_voc

BACKBONE = "dinov2_vits14"
TINY = dict(
    batch_size=4, crop=56, base_long_side=70, workers=0, log_every=2, checkpoint_every=0, stats_images=4
)

DINOV2 = get_spec("dinov2_vits14").input


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> VocDataset:
    return VocDataset.open(make_tiny_voc(tmp_path_factory.mktemp("voc"), n_train=8, n_val=2))


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(BACKBONE, "random", "cpu")


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_augment_is_seeded_and_pads_with_unlabelled():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (30, 40), dtype=np.uint8)
    cfg = ProtocolConfig(crop=56, base_long_side=28, scale_range=(1.0, 1.0))
    x1, y1 = augment(rgb, labels, np.random.default_rng([0, 5]), cfg, DINOV2)
    x2, y2 = augment(rgb, labels, np.random.default_rng([0, 5]), cfg, DINOV2)
    assert x1.shape == (3, 56, 56) and y1.shape == (56, 56) and y1.dtype == torch.int64
    torch.testing.assert_close(x1, x2)
    assert torch.equal(y1, y2)
    assert (y1 == IGNORE).sum() == 56 * 56 - 21 * 28  # the 21x28 image, padded with unlabelled pixels
    assert set(torch.unique(y1[y1 != IGNORE]).tolist()) <= {0, 1, 2}
    big = ProtocolConfig(crop=28, base_long_side=280, flip=False, jitter_prob=0.0, scale_range=(1.0, 1.0))
    _, y = augment(rgb, labels, np.random.default_rng(1), big, DINOV2)
    assert (y != IGNORE).all()  # crop inside a larger image: no padding


def test_config_errors():
    with pytest.raises(ProtocolError, match="at least 16 px"):
        ProtocolConfig(crop=10)
    with pytest.raises(ProtocolError, match="multiple of the backbone's patch size 14"):
        CropDataset(None, [], None, ProtocolConfig(crop=50), DINOV2)
    CropDataset(None, [], None, ProtocolConfig(crop=48), get_spec("dino_vits16").input)  # /16: fine
    with pytest.raises(ProtocolError, match="schedule"):
        ProtocolConfig(schedule="step")
    with pytest.raises(ProtocolError, match="scale-range"):
        ProtocolConfig(scale_range=(2.0, 1.0))


def _fixed_batch_loss(voc, backbone, head) -> float:
    """Masked CE on un-augmented crops of every training image (the same pixels before and after)."""
    cfg = ProtocolConfig(**{**TINY, "scale_range": (1.0, 1.0), "flip": False, "jitter_prob": 0.0})
    data = CropDataset(voc, voc.ids("train"), None, cfg, DINOV2)
    xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
    with torch.no_grad():
        logits = Segmenter(backbone.model, head, False, False)(torch.stack(xs))
    return float(F.cross_entropy(logits, torch.stack(ys), ignore_index=IGNORE))


def test_short_run_decreases_the_loss(voc, backbone, tmp_path):
    before = _state(backbone.model)
    cfg = ProtocolConfig(iterations=16, lr=0.003, **TINY)
    head, meta, history = train_protocol(voc, None, "train", backbone, cfg, tmp_path, progress=False)
    assert _fixed_batch_loss(voc, backbone, head) < math.log(len(voc.classes)) - 0.15  # the zero head's loss
    assert len(history) == 8 and history[-1]["iteration"] == 16
    assert np.mean([h["loss"] for h in history[-3:]]) < history[0]["loss"]
    for name in ("head.safetensors", "head.json", "loss.png", "history.json", CHECKPOINT_FILE):
        assert (tmp_path / name).is_file()
    saved, saved_meta = load_head(tmp_path)
    torch.testing.assert_close(saved.conv.weight, head.conv.weight)
    assert (
        saved_meta.backbone == BACKBONE
        and saved_meta.long_side == 70
        and saved_meta.train["protocol"] == "paper"
    )
    assert meta["train"]["iterations_done"] == 16 and meta["classes"] == list(voc.classes)
    for k, v in before.items():  # frozen: the backbone is untouched
        assert torch.equal(v, backbone.model.state_dict()[k]), k
    scores = evaluate_model(voc, "val", backbone.model, head, 70, progress=False)
    assert 0 <= scores.miou <= 1


def test_finetune_changes_the_backbone_and_saves_it(voc, backbone, tmp_path):
    before = _state(backbone.model)
    cfg = ProtocolConfig(iterations=3, finetune=True, backbone_lr=0.01, **TINY)
    _, meta, _ = train_protocol(voc, None, "train", backbone, cfg, tmp_path, progress=False)
    for k, v in before.items():  # the caller's frozen backbone is not modified...
        assert torch.equal(v, backbone.model.state_dict()[k]), k
    tuned = load_backbone(BACKBONE, str(tmp_path / BACKBONE_FILE), "cpu")  # ...the saved copy is
    changed = [k for k, v in before.items() if not torch.equal(v, tuned.model.state_dict()[k])]
    assert len(changed) > len(before) // 2
    assert meta["weights_id"] == tuned.weights_id  # head.json points at the fine-tuned weights


def test_resume_continues_exactly(voc, backbone, tmp_path):
    cfg = ProtocolConfig(iterations=6, **TINY)
    straight, _, hist = train_protocol(voc, None, "train", backbone, cfg, tmp_path / "a", progress=False)
    train_protocol(voc, None, "train", backbone, replace(cfg, iterations=3), tmp_path / "b", progress=False)
    resumed, meta, hist_b = train_protocol(voc, None, "train", backbone, cfg, tmp_path / "b", progress=False)
    torch.testing.assert_close(resumed.conv.weight, straight.conv.weight)
    torch.testing.assert_close(resumed.conv.bias, straight.conv.bias)
    assert hist_b[0] == pytest.approx(hist[0]) and hist_b[-1]["iteration"] == 6  # the history carries over
    with pytest.raises(ProtocolError, match="other settings.*--no-resume"):
        train_protocol(voc, None, "train", backbone, replace(cfg, lr=0.01), tmp_path / "b", progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str, cfg: dict) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    config = ProtocolConfig(**cfg)
    train_protocol(
        VocDataset.open(root),
        None,
        "train",
        load_backbone(BACKBONE, "random", "cpu"),
        config,
        out,
        progress=False,
    )


def test_ddp_two_processes_match_one(voc, backbone, tmp_path):
    cfg = ProtocolConfig(iterations=4, **TINY)
    single, _, _ = train_protocol(voc, None, "train", backbone, cfg, tmp_path / "single", progress=False)
    # spawn, not fork: a forked child cannot run autograd once this process has (any earlier test may have)
    torch.multiprocessing.start_processes(
        _ddp_worker,
        args=(2, _free_port(), str(voc.root), str(tmp_path / "ddp"), asdict(cfg)),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    ddp, meta = load_head(tmp_path / "ddp")
    assert meta.train["world_size"] == 2
    torch.testing.assert_close(ddp.conv.weight, single.conv.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ddp.conv.bias, single.conv.bias, rtol=1e-4, atol=1e-5)
    assert not torch.equal(single.conv.weight, torch.zeros_like(single.conv.weight))
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert history[-1]["iteration"] == 4


def test_ddp_needs_a_divisible_batch(voc, backbone, tmp_path, monkeypatch):
    from experiments import protocol
    from experiments.distributed import DistContext

    ctx = DistContext(3, 0, 0, torch.device("cpu"), False)
    monkeypatch.setattr(protocol, "setup_distributed", lambda device: ctx)
    with pytest.raises(ProtocolError, match="multiple of 3"):
        train_protocol(
            voc, None, "train", backbone, ProtocolConfig(iterations=1, **TINY), tmp_path, progress=False
        )


def test_missing_labels_are_reported_before_training(voc, backbone, tmp_path):
    (tmp_path / "labels").mkdir()
    with pytest.raises(ProtocolError, match=r"no labels for 8 of the 8 images.*make-labels --split train"):
        train_protocol(
            voc, tmp_path / "labels", "train", backbone, ProtocolConfig(**TINY), tmp_path, progress=False
        )


def test_flags_round_trip_and_share_existing_options():
    p = argparse.ArgumentParser()  # like `train`, which has these flags for its fast trainer
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--resolution", "--long-side", dest="resolution", default=None)
    add_protocol_arguments(p)
    assert protocol_config_from_args(p.parse_args([])) == ProtocolConfig()  # the paper's defaults (batch 10)
    args = p.parse_args(
        [
            "--protocol",
            "paper",
            "--iterations",
            "50",
            "--finetune",
            "--scale-range",
            "0.75",
            "1.5",
            "--no-flip",
            "--color-jitter",
            "0",
            "0",
            "0",
            "0",
            "--no-resume",
            "--batch-size",
            "12",
            "--long-side",
            "518",
            "--seed",
            "3",
        ]
    )
    cfg = protocol_config_from_args(args)
    assert args.protocol == "paper" and cfg.iterations == 50 and cfg.finetune and cfg.seed == 3
    assert (
        cfg.batch_size == 12 and cfg.base_long_side == 518 and cfg.weight_decay == 1e-3 and cfg.class_balance
    )
    assert (
        cfg.scale_range == (0.75, 1.5)
        and not cfg.flip
        and cfg.color_jitter == (0, 0, 0, 0)
        and not cfg.resume
    )
    own = argparse.ArgumentParser()
    add_protocol_arguments(own, with_protocol_flag=False)
    assert protocol_config_from_args(own.parse_args(["--base-long-side", "224", "--crop", "224"])).crop == 224


def test_the_default_objective_is_the_interactive_trainers(voc, backbone, tmp_path):
    from core.config import TrainConfig
    from core.train import class_weights
    from experiments.protocol import _class_weight

    d, t = ProtocolConfig(), TrainConfig()
    assert d.class_balance == t.class_balance and d.weight_decay == t.weight_decay
    data = CropDataset(voc, voc.ids("train"), None, d, DINOV2)
    counts = sum(
        np.bincount(g[g != IGNORE], minlength=len(voc.classes))
        for g in (voc.ground_truth(i) for i in voc.ids("train"))
    )
    torch.testing.assert_close(
        _class_weight(data, len(voc.classes), torch.device("cpu")), torch.from_numpy(class_weights(counts))
    )
    train_protocol(
        voc, None, "train", backbone, ProtocolConfig(iterations=2, **TINY), tmp_path, progress=False
    )
    groups = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [t.weight_decay, 0.0]  # the weights decay, the bias not
