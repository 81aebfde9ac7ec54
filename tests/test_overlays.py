"""Heatmaps and guides a person can read: over the photo, the same size as the image,
the outlines on the region borders, a colour scale."""

from __future__ import annotations

import numpy as np

from alseg_core import storage
from alseg_core.annotation import make_request, write_request
from alseg_core.annotation.overlays import OUTLINE, region_borders
from alseg_core.annotation.requests import RequestItem
from alseg_core.datasets import cityscapes
from alseg_core.superpixels import SuperpixelParams, compute_regions


def test_request_heatmap_and_guide_are_drawn_over_the_photo(synthetic_root, tmp_path):
    samples = cityscapes.list_samples(str(synthetic_root), "train")[:2]
    photos = {s.image_id: cityscapes.read_image(s) for s in samples}
    maps = {i: compute_regions(p, SuperpixelParams(n_regions=30, compactness=0.02))
            for i, p in photos.items()}  # fmt: skip
    a, b = (s.image_id for s in samples)
    items = [RequestItem(a, (2, 5, 7), False, 0.9, 3), RequestItem(b, (), True, 0.5, 9)]
    h, w = photos[a].shape[:2]
    heat = {a: np.linspace(0, 0.3, (h // 4) * (w // 4), dtype=np.float32).reshape(h // 4, -1),
            b: np.ones((h // 4, w // 4), np.float32)}  # fmt: skip
    write_request(str(tmp_path / "req"), make_request(1, "superpixel", "x", items),
                  region_maps=maps, heatmaps=heat, photos=photos.get)  # fmt: skip
    for image_id, regions in ((a, (2, 5, 7)), (b, None)):
        area = np.isin(maps[image_id], regions) if regions else np.ones((h, w), bool)
        for folder in ("heatmaps", "guides"):
            img = storage.read_image(str(tmp_path / "req" / folder / f"{image_id}.png"))
            assert img.shape == photos[image_id].shape, (folder, img.shape)
            lines = (img == OUTLINE).all(-1)
            assert lines.any() and not (lines & ~area).any(), folder  # only on what is asked
            if regions:
                assert not (lines & ~region_borders(maps[image_id])).any(), folder
                # every requested region is outlined
                assert set(np.unique(maps[image_id][lines]).tolist()) == set(regions)
            else:  # a whole image: its frame
                assert lines[0].all() and lines[-1].all() and not lines[h // 2, w // 2]
        guide = storage.read_image(str(tmp_path / "req" / "guides" / f"{image_id}.png"))
        inside, outside = area & ~lines, ~area
        if outside.any():  # dimmed outside, the photo still visible inside
            assert guide[outside].mean() < 0.5 * photos[image_id][outside].mean() + 1
        corr = np.corrcoef(guide[inside][:, 0], photos[image_id][inside][:, 0])[0, 1]
        assert corr > 0.9  # the photo shows through the tint
    heatmap = storage.read_image(str(tmp_path / "req" / "heatmaps" / f"{a}.png"))
    bar = heatmap[4 + 1, w - max(16, w // 5) - 4 : w - 4]  # the colour scale, top right
    assert bar[0].sum() < bar[-1].sum()  # dark to bright
    plain = storage.read_image(str(tmp_path / "req" / "preannotations" / f"{a}.png"))
    assert plain.ndim == 2 and set(np.unique(plain).tolist()) <= {0, 128, 255}  # for tools
