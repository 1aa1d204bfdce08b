"""core.coco against pycocotools itself: RLE, polygons, area and bbox; label maps to COCO and back."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as reference

from core import coco
from core.coco import CocoClass, CocoError

N = 255


def test_rle_decodes_with_pycocotools_and_has_its_area_and_bbox():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 7), (7, 1), (13, 13), (40, 33), (200, 3)]:
        for density in (0.0, 0.02, 0.5, 0.98, 1.0):
            m = rng.random((h, w)) < density
            rle = coco.encode(m)
            assert isinstance(rle["counts"], str) and rle["size"] == [h, w]
            back = {"size": rle["size"], "counts": rle["counts"].encode()}
            np.testing.assert_array_equal(reference.decode(back).astype(bool), m)
            np.testing.assert_array_equal(coco.decode(rle), m)
            assert coco.area(rle) == int(m.sum()) == int(reference.area(back))
            assert coco.bbox(rle) == reference.toBbox(back).tolist()
    assert coco.encode(np.ones((2, 2), bool)) == {"size": [2, 2], "counts": "04"}  # the spec's own example


def test_polygons_and_uncompressed_rle_decode_like_pycocotools():
    poly = [[1.0, 1.0, 8.0, 1.0, 8.0, 6.0, 1.0, 6.0]]
    expected = reference.decode(reference.merge(reference.frPyObjects(poly, 10, 12))).astype(bool)
    got = coco.decode(poly, 10, 12)
    np.testing.assert_array_equal(got, expected)
    assert 30 <= got.sum() <= 56  # a 7x5 box, give or take pycocotools' boundary rule
    unc = {"size": [3, 2], "counts": [1, 3, 2]}  # column-major: 0 | 1 1 1 | 0 0
    np.testing.assert_array_equal(coco.decode(unc), np.array([[0, 1], [1, 0], [1, 0]], bool))
    with pytest.raises(CocoError, match="height and width"):
        coco.decode(poly)
    with pytest.raises(CocoError, match="polygons or an RLE"):
        coco.decode("nonsense", 3, 3)
    with pytest.raises(CocoError, match="the image is 4x3"):
        coco.decode(coco.encode(np.zeros((2, 2), bool)), 3, 4)


def test_document_and_label_map_round_trip():
    labels = np.full((6, 5), N, np.uint8)
    labels[:2] = 0
    labels[2:4, :3] = 1
    labels[5, 4] = 2
    classes = [CocoClass(0, "background"), CocoClass(1, "cat", "#ff0000"), CocoClass(2, "dog")]
    images = [{"id": 7, "file_name": "a.png", "width": 5, "height": 6}]
    builder = coco.CocoBuilder(classes, {"description": "t"})
    builder.add(images[0], labels)
    doc = builder.document()
    assert [c["name"] for c in doc["categories"]] == ["cat", "dog"] and doc["categories"][0][
        "color"
    ] == "#ff0000"
    assert [a["category_id"] for a in doc["annotations"]] == [2, 3] and doc["annotations"][1]["area"] == 1
    back = coco.label_map(doc["annotations"], 6, 5, {2: 1, 3: 2})
    np.testing.assert_array_equal(back, np.where(labels == 0, N, labels))
    full_builder = coco.CocoBuilder(classes, {}, include_background=True)
    full_builder.add(images[0], labels)
    full = full_builder.document()
    with pytest.raises(CocoError, match="label map is 4x4"):
        full_builder.add(images[0], np.zeros((4, 4), np.uint8))
    np.testing.assert_array_equal(coco.label_map(full["annotations"], 6, 5, {1: 0, 2: 1, 3: 2}), labels)
    # A small object on a larger one keeps its pixels, whatever the annotation order.
    big = {"category_id": 1, "segmentation": coco.encode(np.ones((6, 5), bool))}
    small = {"category_id": 2, "segmentation": coco.encode(labels == 2)}
    assert coco.label_map([small, big], 6, 5, {1: 1, 2: 2})[5, 4] == 2
    with pytest.raises(CocoError, match="category 9"):
        coco.label_map([{"id": 1, "category_id": 9, "segmentation": []}], 6, 5, {1: 1})
