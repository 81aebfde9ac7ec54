"""Pictures for people: the uncertainty heatmap and the request guide over the photo.

- ``heatmap_overlay``: the per-pixel score ('inferno', normalised to the image's own
  maximum) blended over the photo, the requested regions outlined, and a colour scale
  with its range in the top-right corner; the same size as the image.
- ``guide_overlay``: the photo dimmed outside the requested regions, tinted inside, the
  region outlines drawn on the region borders.

Outlines are pure yellow (``OUTLINE``), a colour neither blend can produce, so a reader
(or a test) can find them. The plain class-free masks for tools stay in
``preannotations/``.
"""

from __future__ import annotations

import numpy as np

OUTLINE = (255, 255, 0)
TINT = np.array([0, 160, 255], np.float32)


def region_borders(region_map: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour in another region."""
    edge = np.zeros(region_map.shape, bool)
    horizontal = region_map[:, 1:] != region_map[:, :-1]
    vertical = region_map[1:, :] != region_map[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge


def outline(area: np.ndarray, region_map: np.ndarray | None) -> np.ndarray:
    """Border pixels of the requested regions (the area's own border for whole images)."""
    if region_map is None:  # the area's own border, the image frame included
        inside = np.pad(area.astype(np.int32), 1)
        return region_borders(inside)[1:-1, 1:-1] & area
    return region_borders(region_map) & area


def _resize(scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if scores.shape == shape:
        return scores.astype(np.float32)
    img = Image.fromarray(scores.astype(np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.BILINEAR), np.float32)


def _colour_scale(out: np.ndarray, top: float) -> None:
    """A 'inferno' bar with '0' and the maximum in the top-right corner of ``out``."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    h, w = out.shape[:2]
    bar_w, bar_h = max(16, w // 5), max(4, h // 40)
    if bar_w + 8 > w or bar_h + 14 > h:
        return
    ramp = colormaps["inferno"](np.linspace(0, 1, bar_w))[:, :3] * 255
    x0, y0 = w - bar_w - 4, 4
    out[y0 : y0 + bar_h, x0 : x0 + bar_w] = ramp[None].astype(np.uint8)
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    draw.text((x0, y0 + bar_h + 1), "0", fill=(255, 255, 255))
    label = f"{top:.3g}"
    draw.text((x0 + bar_w - 6 * len(label), y0 + bar_h + 1), label, fill=(255, 255, 255))
    out[:] = np.asarray(img)


def heatmap_overlay(
    photo: np.ndarray | None,
    scores: np.ndarray,
    area: np.ndarray,
    region_map: np.ndarray | None,
) -> np.ndarray:
    """(H, W, 3) uint8: scores over the photo (grey without one), regions outlined."""
    from matplotlib import colormaps

    shape = area.shape
    heat = _resize(scores, shape)
    top = float(heat.max()) if heat.size else 0.0
    norm = heat / top if top > 0 else np.zeros_like(heat)
    colour = colormaps["inferno"](norm.astype(np.float64))[..., :3] * 255
    base = photo.astype(np.float32) if photo is not None else np.full((*shape, 3), 128.0)
    out = (0.45 * base + 0.55 * colour).clip(0, 254).astype(np.uint8)
    out[outline(area, region_map)] = OUTLINE
    _colour_scale(out, top)
    return out


def guide_overlay(
    photo: np.ndarray | None, area: np.ndarray, region_map: np.ndarray | None
) -> np.ndarray:
    """(H, W, 3) uint8: what to label, drawn over the photo."""
    base = photo.astype(np.float32) if photo is not None else np.full((*area.shape, 3), 128.0)
    out = 0.35 * base
    out[area] = 0.6 * base[area] + 0.4 * TINT
    out = out.clip(0, 254).astype(np.uint8)
    out[outline(area, region_map)] = OUTLINE
    return out
