"""core.tiff: stacks to planes, the channel rule, and one intensity map for a whole import."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from core.tiff import ScalingBuilder, TiffError, TiffOptions, channel_indices, planes_of, read_tiff, to_rgb8


def tiff_bytes(arr: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue()


def test_a_stack_is_planes_and_channels_follow_the_rule():
    stack = read_tiff(tiff_bytes(np.arange(10 * 4 * 5, dtype=np.uint8).reshape(10, 4, 5)))
    assert stack.planes.shape == (10, 4, 5, 1) and planes_of(stack, TiffOptions()) == list(range(10))
    assert planes_of(stack, TiffOptions(plane=3)) == [3]
    with pytest.raises(TiffError, match="plane 12 does not exist"):
        planes_of(stack, TiffOptions(plane=12))
    cyx = read_tiff(
        tiff_bytes(np.zeros((3, 4, 5), np.uint16), metadata={"axes": "CYX"}, photometric="minisblack")
    )
    assert cyx.planes.shape == (1, 4, 5, 3) and cyx.axes == "CYX"
    five = read_tiff(
        tiff_bytes(np.zeros((5, 4, 6), np.uint16), metadata={"axes": "CYX"}, photometric="minisblack")
    )
    assert five.planes.shape == (1, 4, 6, 5)
    assert channel_indices(5, TiffOptions()) == (0, 1, 2) and channel_indices(1, TiffOptions()) == (0,)
    assert channel_indices(5, TiffOptions(channels=(4, 0))) == (4, 0)
    with pytest.raises(TiffError, match="channel 7 does not exist"):
        channel_indices(5, TiffOptions(channels=(7,)))
    with pytest.raises(TiffError, match="not a readable TIFF"):
        read_tiff(b"II*\x00broken", "x.tif")


def scaling(stacks, options):
    builder = ScalingBuilder(options)
    for s in stacks:
        builder.add(s)
    return builder.build()


def test_sixteen_bit_images_share_one_intensity_map():
    dark = np.full((8, 8), 1000, np.uint16)
    bright = np.full((8, 8), 3000, np.uint16)
    bright[0, 0] = 1000
    stacks = [read_tiff(tiff_bytes(a)) for a in (dark, bright)]
    scale = scaling(stacks, TiffOptions(low=0, high=100))
    assert scale.ranges == ((1000.0, 3000.0),) and "whole import" in scale.describe()
    a, b = (to_rgb8(s.planes[0], scale) for s in stacks)
    assert a.shape == (8, 8, 3) and (a == 0).all()  # the same value is the same grey in both images
    assert b[0, 0, 0] == 0 and b[1, 1, 0] == 255 and (b[..., 0] == b[..., 2]).all()
    assert scaling([read_tiff(tiff_bytes(np.zeros((2, 2), np.uint8)))], TiffOptions()).ranges is None
