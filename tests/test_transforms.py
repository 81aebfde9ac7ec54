from __future__ import annotations

import numpy as np

from alseg_core.datasets.transforms import (
    random_crop_pair,
    resize_pair,
    to_tensor,
)


def test_mask_resize_is_nearest_and_image_bilinear():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, 2:] = 200
    mask = np.zeros((4, 4), np.uint8)
    mask[:, 2:] = 13
    img2, mask2 = resize_pair(image, mask, (8, 8))
    assert set(np.unique(mask2)) == {0, 13}  # no blended label values
    assert len(np.unique(img2)) > 2  # bilinear image has in-between values
    assert mask2[:, :3].max() == 0 and mask2[:, 5:].min() == 13


def test_crop_pads_mask_with_ignore():
    rng = np.random.default_rng(0)
    image, mask = random_crop_pair(
        np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), (3, 3), rng
    )
    assert mask.shape == (3, 3) and (mask == 255).sum() == 5 and image.shape == (3, 3, 3)


def test_to_tensor_normalises():
    t = to_tensor(np.full((2, 2, 3), 255, np.uint8))
    assert t.shape == (3, 2, 2)
    assert abs(float(t[0, 0, 0]) - (1 - 0.485) / 0.229) < 1e-5
