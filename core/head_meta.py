"""The one record of a trained head: what a head file's head.json holds, what the database's head row holds,
and what the engine's live head carries. No torch here (storage/ reads it)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from core.config import FEATURE_VERSION, FeatureConfig


@dataclass(frozen=True)
class HeadMeta:
    """Everything needed to use a head again: which features it expects and what its outputs mean."""

    backbone: str  # registry name, e.g. dinov2_vits14
    weights_id: str  # identity of the backbone weights the features came from
    classes: list[str]  # class names by output index
    long_side: int  # backbone input size the head was trained at (by scale: 0)
    train: dict = field(default_factory=dict)  # training settings and results (loss, seconds, pixels)
    created: float = field(default_factory=time.time)
    format: int = 1
    feature_version: int = FEATURE_VERSION  # core.config.FEATURE_VERSION of the training features
    features: dict = field(default_factory=dict)  # how to compute its input without probeseg (feature_recipe)
    weights_sha256: str = ""  # of head.safetensors, checked on load (an altered file is refused)
    # whatever else the writer recorded (an export: the class colours, the head's metrics)
    extra: dict = field(default_factory=dict)
    # core.config.FeatureConfig.resolution of its features ("" in older heads: long_side)
    resolution: str = ""
    # the web app's class ids by output index (a class keeps its id through renames and moves; [] from the CLI)
    class_ids: list[int] = field(default_factory=list)

    @property
    def feature_config(self) -> FeatureConfig:
        """How its training features were computed (predict with it at the same resolution by default)."""
        return FeatureConfig.parse(self.resolution or str(self.long_side))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> HeadMeta:
        """Read what any release wrote (a head.json, a head row's meta): keys it does not know go into `extra`;
        the first release recorded no feature version (1) and the web app's first rows named the weights
        `backbone_weights`. Raises TypeError or ValueError on what is not a head record."""
        d = dict(stored)
        d.setdefault("feature_version", 1)
        if "weights_id" not in d and "backbone_weights" in d:
            d["weights_id"] = d.pop("backbone_weights")
        d.pop("backbone_weights", None)
        known = {f.name for f in fields(cls)}
        extra = {**(d.get("extra") or {}), **{k: v for k, v in d.items() if k not in known}}
        meta = cls(**{k: v for k, v in d.items() if k in known and k != "extra"}, extra=extra)
        if not isinstance(meta.classes, list) or not isinstance(meta.class_ids, list):
            raise ValueError("classes and class_ids must be lists")
        return meta

    def but(self, **changes: Any) -> HeadMeta:
        """A copy with `changes` (the record is frozen)."""
        return replace(self, **changes)
