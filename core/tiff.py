"""TIFF stacks and scientific images (tifffile) as 8-bit RGB planes, by rules that hold for a whole import.

- Planes: every axis other than Y, X and the channel axis (Z, T, pages, ...) is a plane; each plane becomes
  one image (`TiffOptions.plane` picks one instead).
- Channels: the channel axis is 'S' (samples, e.g. RGB TIFF) or else 'C'. By default 1 channel is grey,
  2 are red and green, 3 are RGB, and of 4 or more the first three are shown as RGB.
  `TiffOptions.channels` names the channel shown as red, green, blue (one index: grey).
- Intensities: 8-bit data is kept. Anything else (16-bit, 32-bit, float) is scaled by ONE linear map per
  shown channel for the whole import: the `low` and `high` percentiles of that channel over all planes of
  all images go to 0 and 255. So one intensity means one grey in every image; `TiffScaling.describe()` says
  which map was used, and the import records it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from core.errors import UserError

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
MAX_SAMPLE = 1_000_000  # values per channel and image that the percentiles are estimated from


class TiffError(UserError, ValueError):
    pass


def is_tiff(head: bytes) -> bool:
    return head[:4] in TIFF_MAGIC


@dataclass(frozen=True)
class TiffOptions:
    plane: int | None = None  # None: every plane is an image; k: only plane k of each file
    channels: tuple[int, ...] | None = (
        None  # channel indices shown as R, G, B (one: grey); None: the rule above
    )
    low: float = 0.5  # percentile mapped to 0 (non-8-bit data)
    high: float = 99.5  # percentile mapped to 255

    def __post_init__(self):
        if not 0 <= self.low < self.high <= 100:
            raise TiffError(f"percentiles need 0 <= low < high <= 100, got {self.low} and {self.high}")
        if self.channels is not None and len(self.channels) not in (1, 2, 3):
            raise TiffError("channels: give 1 (grey), 2 (red, green) or 3 (red, green, blue) channel indices")


@dataclass(frozen=True)
class TiffStack:
    planes: np.ndarray  # [P, H, W, C] in the file's dtype
    axes: str  # tifffile's axes of the series, e.g. 'ZCYX'


def read_tiff(data: bytes, name: str = "image") -> TiffStack:
    """The first series of a TIFF file as planes [P, H, W, C]."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            arr, axes = series.asarray(), series.axes
    except Exception as exc:  # tifffile raises many types for broken files
        raise TiffError(f"{name}: not a readable TIFF file ({exc})") from None
    if arr.dtype.kind not in "uif" and arr.dtype != bool:
        raise TiffError(f"{name}: pixel type {arr.dtype} is not supported (use integer or float samples)")
    if "Y" not in axes or "X" not in axes:
        raise TiffError(f"{name}: no Y and X axes in this TIFF (axes {axes})")
    channel = "S" if "S" in axes else ("C" if "C" in axes else None)
    order = [axes.index(a) for a in axes if a not in ("Y", "X", channel)]
    order += [axes.index("Y"), axes.index("X")] + ([axes.index(channel)] if channel else [])
    arr = np.transpose(arr, order)
    others = len(order) - (3 if channel else 2)
    h, w = arr.shape[others], arr.shape[others + 1]
    arr = arr.reshape(-1, h, w, arr.shape[-1] if channel else 1)
    return TiffStack(arr, axes)


def channel_indices(num_channels: int, options: TiffOptions) -> tuple[int, ...]:
    if options.channels is not None:
        bad = [c for c in options.channels if not 0 <= c < num_channels]
        if bad:
            raise TiffError(
                f"channel {bad[0]} does not exist: the image has {num_channels} channel(s) (0.."
                f"{num_channels - 1})"
            )
        return tuple(options.channels)
    return tuple(range(min(num_channels, 3)))


@dataclass(frozen=True)
class TiffScaling:
    """The linear map of each shown channel position: value -> (value - low) / (high - low) * 255."""

    ranges: tuple[tuple[float, float], ...] | None  # None: 8-bit data, kept as it is
    options: TiffOptions

    def describe(self) -> str:
        if self.ranges is None:
            return "8-bit TIFF data kept as it is"
        spans = ", ".join(f"{lo:g}..{hi:g}" for lo, hi in self.ranges)
        return (
            f"TIFF intensities scaled to 0..255 by one rule for the whole import: the {self.options.low:g} and "
            f"{self.options.high:g} percentiles of each shown channel over all images ({spans})"
        )


class ScalingBuilder:
    """Collects a bounded sample of each shown channel's values, one stack at a time (so an import of many
    large TIFFs never holds more than one decoded stack), then gives the import's one intensity map."""

    def __init__(self, options: TiffOptions):
        self.options = options
        self.samples: dict[int, list[np.ndarray]] = {}
        self.only_8bit = True
        self._rng = np.random.default_rng(0)

    def add(self, stack: TiffStack) -> None:
        self.only_8bit &= stack.planes.dtype == np.uint8
        o = self.options
        planes = stack.planes if o.plane is None else stack.planes[o.plane : o.plane + 1]
        for pos, c in enumerate(channel_indices(stack.planes.shape[-1], o)):
            values = planes[..., c].reshape(-1)
            if values.size > MAX_SAMPLE:
                values = values[self._rng.integers(0, values.size, MAX_SAMPLE)]
            self.samples.setdefault(pos, []).append(values.astype(np.float64))

    def build(self) -> TiffScaling:
        if self.only_8bit:
            return TiffScaling(None, self.options)
        ranges = []
        for pos in sorted(self.samples):
            values = np.concatenate(self.samples[pos])
            values = values[np.isfinite(values)]
            lo, hi = (
                np.percentile(values, [self.options.low, self.options.high]) if values.size else (0.0, 1.0)
            )
            ranges.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))
        return TiffScaling(tuple(ranges), self.options)


def to_rgb8(plane: np.ndarray, scale: TiffScaling) -> np.ndarray:
    """One plane [H, W, C] -> [H, W, 3] uint8 by the channel rule and the import's intensity map."""
    chans = channel_indices(plane.shape[-1], scale.options)
    out = np.zeros((*plane.shape[:2], 3), np.uint8)
    for pos, c in enumerate(chans):
        values = plane[..., c]
        if scale.ranges is not None:
            lo, hi = scale.ranges[min(pos, len(scale.ranges) - 1)]
            values = np.clip((np.nan_to_num(values.astype(np.float64)) - lo) * (255.0 / (hi - lo)), 0, 255)
            values = np.rint(values)
        out[..., pos] = values.astype(np.uint8)
    if len(chans) == 1:
        out[..., 1] = out[..., 2] = out[..., 0]
    return out


def planes_of(stack: TiffStack, options: TiffOptions) -> list[int]:
    n = stack.planes.shape[0]
    if options.plane is None:
        return list(range(n))
    if not 0 <= options.plane < n:
        raise TiffError(f"plane {options.plane} does not exist: the file has {n} plane(s) (0..{n - 1})")
    return [options.plane]
