"""Sample photos that ship inside an installed package (scikit-image's data folder): no network needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from core.errors import UserError

SAMPLE_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")


def sample_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "sample images come from scikit-image, which is not installed: pip install scikit-image"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sample_files() -> list[tuple[str, bytes]]:
    """(file name, bytes) of the sample photos that are present in this scikit-image installation."""
    folder = sample_dir()
    found = [(name, (folder / name).read_bytes()) for name in SAMPLE_FILES if (folder / name).is_file()]
    if not found:
        raise UserError(f"no sample images found in {folder}; upload your own images instead")
    return found
