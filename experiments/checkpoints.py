"""The protocol's files: the resumable checkpoint (written atomically; loaded with weights_only=True), the
check that a resumed run has the same settings, and the loss plot."""

from __future__ import annotations

from pathlib import Path

import torch

from core.atomic import atomic_path
from experiments.config import ProtocolConfig, ProtocolError

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
LOSS_PLOT = "loss.png"

# Settings that do not change the trajectory; a checkpoint may be resumed with other values of these.
_RESUMABLE = {"iterations", "checkpoint_every", "resume", "log_every", "workers"}


def atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def check_resumable(saved: dict, config: ProtocolConfig, path: Path) -> None:
    now = config.to_dict()
    diffs = []
    for k, v in saved.items():
        if k in _RESUMABLE or k not in now:
            continue
        a = list(v) if isinstance(v, list | tuple) else v
        b = list(now[k]) if isinstance(now[k], list | tuple) else now[k]
        if a != b:
            diffs.append(f"{k}: {a} then, {b} now")
    if diffs:
        raise ProtocolError(
            f"{path} was written with other settings ({'; '.join(diffs)}); resume with the same settings, pick "
            "another --out, or pass --no-resume to start over"
        )


def plot_loss(history: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if history:
        ax.plot([h["iteration"] for h in history], [h["loss"] for h in history], lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("masked cross-entropy")
    ax.set_title(title or "training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_checkpoint(path: Path, it: int, head, model, optimizer, history, config: ProtocolConfig) -> None:
    state = {
        "iteration": it,
        "head": head.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": history,
        "config": config.to_dict(),
    }
    if config.finetune:
        state["backbone"] = model.state_dict()
    atomic_save(state, path)
