"""What every repository module needs: the database, the image store, the label cache, the data folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cache import LabelCache
from .db import Database
from .files import ImageStore


@dataclass
class Ctx:
    data_dir: Path
    db: Database
    store: ImageStore
    cache: LabelCache
