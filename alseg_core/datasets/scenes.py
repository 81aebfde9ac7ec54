"""Painting one synthetic street scene (the renderer behind ``alseg make-synthetic``).

See ``alseg_core.datasets.synthetic`` for what the scenes hold and why.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alseg_core.datasets.labels import LABEL_BY_NAME

_ID = {name: LABEL_BY_NAME[name].id for name in LABEL_BY_NAME}


class _Canvas:
    """Image, label-id and instance-id layers painted together."""

    def __init__(self, h: int, w: int, rng: np.random.Generator) -> None:
        self.h, self.w, self.rng = h, w, rng
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.img = np.zeros((h, w, 3), np.float32)
        self.label = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.int32)
        self.counts: dict[int, int] = {}
        # One multi-scale noise field per image gives every surface a texture.
        self.fine = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
        self.coarse = _smooth_noise(rng, h, w, cells=8)

    def paint(
        self,
        mask: np.ndarray,
        label_name: str,
        color: np.ndarray,
        *,
        texture: float = 8.0,
        instance: int | None = None,
    ) -> None:
        if not mask.any():
            return
        label_id = _ID[label_name]
        shade = 1.0 + 0.12 * self.coarse[mask]
        noise = texture * self.fine[mask]
        self.img[mask] = np.clip(color[None, :] * shade[:, None] + noise[:, None], 0, 255)
        self.label[mask] = label_id
        self.inst[mask] = label_id if instance is None else instance

    def new_instance(self, label_name: str) -> int:
        label_id = _ID[label_name]
        k = self.counts.get(label_id, 0)
        self.counts[label_id] = k + 1
        return label_id * 1000 + k


def _smooth_noise(rng: np.random.Generator, h: int, w: int, *, cells: int) -> np.ndarray:
    """(H, W) float32 smooth noise in about -1..1 (bilinear upsampled random grid)."""
    grid = rng.normal(0.0, 1.0, (cells + 1, 2 * cells + 1)).astype(np.float32)
    ys = np.linspace(0, cells, h, dtype=np.float32)
    xs = np.linspace(0, 2 * cells, w, dtype=np.float32)
    y0, x0 = (
        np.floor(ys).astype(int).clip(0, cells - 1),
        np.floor(xs).astype(int).clip(0, 2 * cells - 1),
    )
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    g00, g01 = grid[y0][:, x0], grid[y0][:, x0 + 1]
    g10, g11 = grid[y0 + 1][:, x0], grid[y0 + 1][:, x0 + 1]
    return g00 * (1 - fy) * (1 - fx) + g01 * (1 - fy) * fx + g10 * fy * (1 - fx) + g11 * fy * fx


def _jitter(rng: np.random.Generator, base: tuple[int, int, int], amount: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.normal(0, amount, 3), 0, 255)


def _random_color(rng: np.random.Generator) -> np.ndarray:
    # Vehicles and clothes: a mix of greys (confusable with road and walls) and colours.
    if rng.random() < 0.45:
        v = rng.uniform(30, 200)
        return np.array([v, v, v], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    return rng.uniform(20, 235, 3).astype(np.float32)


def _rect(c: _Canvas, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return (c.xx >= x0) & (c.xx < x1) & (c.yy >= y0) & (c.yy < y1)


def _ellipse(c: _Canvas, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((c.xx - cx) / max(rx, 0.5)) ** 2 + ((c.yy - cy) / max(ry, 0.5)) ** 2 <= 1.0


class _Scene:
    """Lays out one street scene; the geometry is shared by the painting steps."""

    def __init__(self, c: _Canvas) -> None:
        rng = c.rng
        self.c = c
        self.horizon = c.h * rng.uniform(0.32, 0.5)
        self.vx = c.w * rng.uniform(0.35, 0.65)
        self.road_half = rng.uniform(0.45, 0.9)  # half width at the bottom, in image widths
        self.walk = rng.uniform(0.2, 0.5)  # sidewalk width relative to the road half width
        # Hard and rare cases, each in a minority of scenes (random sampling sees few):
        # fog or dusk, a tram on the road, a group of cyclists and motorcyclists.
        r = rng.random()
        self.condition = "fog" if r < 0.1 else ("dusk" if r < 0.2 else "clear")
        self.tram = rng.random() < 0.08
        self.riders = rng.poisson(2.5) if rng.random() < 0.12 else rng.poisson(0.15)

    def depth(self, y: np.ndarray | float) -> np.ndarray | float:
        """0 at the horizon, 1 at the bottom row: the perspective scale of a ground point."""
        return np.clip((y - self.horizon) / (self.c.h - self.horizon), 0.0, 1.0)

    def road_edges(self, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        half = self.depth(y) * self.road_half * self.c.w
        return self.vx - half, self.vx + half

    def walk_edges(self, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        left, right = self.road_edges(y)
        extra = self.depth(y) * self.road_half * self.walk * self.c.w
        return left - extra, right + extra


def _paint_background(s: _Scene) -> None:
    c, rng = s.c, s.c.rng
    overcast = rng.random() < 0.3
    sky_top = _jitter(rng, (150, 150, 155) if overcast else (70, 130, 200), 15)
    sky = c.yy < s.horizon + 2
    c.paint(sky, "sky", sky_top, texture=2.0)
    c.img[sky] *= (0.85 + 0.25 * (c.yy[sky] / max(s.horizon, 1)))[:, None]

    ground = ~sky
    c.paint(ground, "terrain", _jitter(rng, (120, 150, 80), 18), texture=10.0)

    # Buildings stand along the horizon, far enough apart to show sky between some.
    x = rng.uniform(-0.1, 0.05) * c.w
    while x < c.w:
        bw = rng.uniform(0.08, 0.3) * c.w
        if rng.random() < 0.85:
            top = s.horizon - rng.uniform(0.05, 0.45) * c.h
            bottom = s.horizon + rng.uniform(0.02, 0.12) * c.h
            base = (
                (rng.uniform(90, 140),) * 3
                if rng.random() < 0.5
                else (rng.uniform(120, 190), rng.uniform(90, 140), rng.uniform(60, 110))
            )
            block = _rect(c, x, top, x + bw, bottom)
            c.paint(block, "building", _jitter(rng, base, 10), texture=7.0)
            _paint_windows(c, x, top, x + bw, bottom)
        x += bw + (rng.uniform(0.0, 0.15) * c.w if rng.random() < 0.4 else 0.0)

    # Trees: vegetation canopies in front of the facades, some reaching into the sky.
    for _ in range(rng.poisson(3)):
        cx = rng.uniform(0, c.w)
        cy = s.horizon - rng.uniform(-0.05, 0.2) * c.h
        r = rng.uniform(0.04, 0.14) * c.h
        canopy = np.zeros_like(c.label, bool)
        for _ in range(rng.integers(2, 5)):
            canopy |= _ellipse(c, cx + rng.normal(0, r), cy + rng.normal(0, r * 0.4), r, r * 0.9)
        trunk = _rect(c, cx - r * 0.12, cy, cx + r * 0.12, s.horizon + 0.08 * c.h)
        c.paint(trunk, "vegetation", _jitter(rng, (80, 60, 40), 10), texture=6.0)
        c.paint(canopy, "vegetation", _jitter(rng, (70, 110, 40), 15), texture=22.0)


def _paint_windows(c: _Canvas, x0: float, y0: float, x1: float, y1: float) -> None:
    rng = c.rng
    step_x, step_y = rng.uniform(6, 14), rng.uniform(7, 14)
    inside = _rect(c, x0 + 2, y0 + 2, x1 - 2, y1 - 4)
    grid = ((c.xx - x0) % step_x < step_x * 0.5) & ((c.yy - y0) % step_y < step_y * 0.5)
    c.img[inside & grid] *= rng.uniform(0.45, 0.8)


def _paint_ground(s: _Scene) -> None:
    c, rng = s.c, s.c.rng
    below = c.yy > s.horizon
    wl, wr = s.walk_edges(c.yy)
    rl, rr = s.road_edges(c.yy)
    walk = below & (c.xx >= wl) & (c.xx < wr)
    c.paint(walk, "sidewalk", _jitter(rng, (170, 150, 160), 15), texture=9.0)
    road = below & (c.xx >= rl) & (c.xx < rr)
    c.paint(road, "road", _jitter(rng, (105, 95, 105), 12), texture=10.0)
    # Lane marks are road: white dashes along the centre line.
    t = s.depth(c.yy)
    dash = road & (np.abs(c.xx - s.vx) < 0.5 + 1.5 * t) & (np.sin(30 * np.sqrt(t + 1e-3)) > 0.2)
    c.img[dash] = np.clip(c.img[dash] + 110, 0, 255)

    if rng.random() < 0.35:  # a wall or fence strip beyond one sidewalk's outer edge
        outside = (wl - c.xx) if rng.random() < 0.5 else (c.xx - wr)
        thickness = (0.02 + 0.25 * t) * c.w * rng.uniform(0.5, 1.0)
        strip = below & (outside >= 0) & (outside < thickness)
        strip &= c.yy < s.horizon + (c.h - s.horizon) * rng.uniform(0.5, 1.0)
        if rng.random() < 0.5:
            c.paint(strip, "wall", _jitter(rng, (125, 120, 130), 12), texture=6.0)
        else:
            # A mesh: holes in a connected grid, so one fence stays one instance.
            holes = ((c.xx.astype(int) // 2) % 3 == 0) & ((c.yy.astype(int) // 2) % 3 == 0)
            c.paint(strip & ~holes, "fence", _jitter(rng, (150, 130, 120), 12), texture=6.0)


def _paint_pole(s: _Scene, x: float, y: float) -> None:
    c, rng = s.c, s.c.rng
    t = float(s.depth(y))
    height = (0.15 + 0.5 * t) * c.h
    width = max(1.0, 2.5 * t + rng.uniform(0, 1))
    c.paint(
        _rect(c, x - width / 2, y - height, x + width / 2, y),
        "pole",
        _jitter(rng, (110, 110, 115), 12),
        texture=4.0,
    )
    top = y - height
    size = max(2.0, (3 + 9 * t) * rng.uniform(0.7, 1.3))
    kind = rng.random()
    if kind < 0.55:
        color = [(220, 200, 20), (200, 30, 30), (40, 70, 200)][rng.integers(0, 3)]
        shape = (
            _ellipse(c, x, top, size * 0.6, size * 0.6)
            if rng.random() < 0.5
            else _rect(c, x - size * 0.6, top - size * 0.6, x + size * 0.6, top + size * 0.6)
        )
        c.paint(shape, "traffic sign", _jitter(rng, color, 15), texture=5.0)
    elif kind < 0.75:
        box = _rect(c, x - size * 0.35, top - size, x + size * 0.35, top + size * 0.2)
        c.paint(box, "traffic light", _jitter(rng, (40, 40, 35), 6), texture=3.0)
        lamp = _ellipse(
            c, x, top - size * (0.75 - 0.35 * rng.integers(0, 3)), size * 0.22, size * 0.22
        )
        c.img[lamp & box] = [(230, 40, 30), (240, 200, 30), (40, 220, 90)][rng.integers(0, 3)]


def _paint_car(s: _Scene, x: float, y: float, name: str = "car") -> None:
    c, rng = s.c, s.c.rng
    t = float(s.depth(y))
    scale = {"car": 1.0, "truck": 1.4, "bus": 1.7}[name]
    w = (0.04 + 0.28 * t) * c.w * scale * rng.uniform(0.8, 1.2)
    h = w * (0.5 if name == "car" else 0.8) * rng.uniform(0.85, 1.15)
    iid = c.new_instance(name)
    color = _random_color(rng)
    body = _rect(c, x - w / 2, y - h * 0.6, x + w / 2, y - h * 0.1)
    cabin_inset = w * (0.18 if name == "car" else 0.02)
    cabin = _rect(c, x - w / 2 + cabin_inset, y - h, x + w / 2 - cabin_inset, y - h * 0.55)
    wheels = _ellipse(c, x - w * 0.3, y - h * 0.1, w * 0.1, h * 0.12) | _ellipse(
        c, x + w * 0.3, y - h * 0.1, w * 0.1, h * 0.12
    )
    c.paint(body | cabin, name, color, texture=5.0, instance=iid)
    glass = _rect(
        c, x - w / 2 + cabin_inset + 2, y - h * 0.95, x + w / 2 - cabin_inset - 2, y - h * 0.62
    )
    c.img[glass & cabin] = c.img[glass & cabin] * 0.35 + 40
    c.paint(wheels, name, np.array([25, 25, 25], np.float32), texture=3.0, instance=iid)


def _paint_tram(s: _Scene, y: float) -> None:
    """A long tram on rails along the road: the only source of the class "train"."""
    c, rng = s.c, s.c.rng
    t = float(s.depth(y))
    rl, rr = s.road_edges(y)
    x = rng.uniform(rl + 0.2 * (rr - rl), rr - 0.2 * (rr - rl))
    h = (0.1 + 0.45 * t) * c.h
    w = h * rng.uniform(2.5, 4.0)
    x0 = x - w * rng.uniform(0.2, 0.8)
    iid = c.new_instance("train")
    colour = [(200, 40, 40), (230, 200, 60), (240, 240, 235), (60, 110, 170)][rng.integers(0, 4)]
    body = _rect(c, x0, y - h, x0 + w, y - h * 0.05)
    c.paint(body, "train", _jitter(rng, colour, 12), texture=5.0, instance=iid)
    band = _rect(c, x0, y - h * 0.8, x0 + w, y - h * 0.45) & body
    win = band & ((c.xx - x0) % (h * 0.5) < h * 0.35)
    c.img[win] = c.img[win] * 0.3 + 30
    pantograph = _rect(c, x0 + w * 0.4, y - h * 1.25, x0 + w * 0.45, y - h)
    c.paint(pantograph, "train", _jitter(rng, (60, 60, 60), 5), texture=2.0, instance=iid)


def _paint_person(s: _Scene, x: float, y: float, *, rider: str | None = None) -> None:
    c, rng = s.c, s.c.rng
    t = float(s.depth(y))
    h = (0.08 + 0.4 * t) * c.h * rng.uniform(0.8, 1.2)
    if rider is not None:  # the vehicle first, the rider on top of it
        vid = c.new_instance(rider)
        vw = h * 0.9
        frame = _ellipse(c, x - vw * 0.35, y - h * 0.15, h * 0.15, h * 0.15) | _ellipse(
            c, x + vw * 0.35, y - h * 0.15, h * 0.15, h * 0.15
        )
        frame |= _rect(c, x - vw * 0.35, y - h * 0.35, x + vw * 0.35, y - h * 0.25)
        if rider == "motorcycle":
            frame |= _ellipse(c, x, y - h * 0.3, vw * 0.3, h * 0.12)
        c.paint(frame, rider, _jitter(rng, (60, 60, 70), 30), texture=4.0, instance=vid)
        y = y - h * 0.3
        h = h * 0.75
    name = "rider" if rider is not None else "person"
    iid = c.new_instance(name)
    head = _ellipse(c, x, y - h * 0.9, h * 0.09, h * 0.1)
    torso = _ellipse(c, x, y - h * 0.6, h * 0.14, h * 0.22)
    legs = _rect(c, x - h * 0.1, y - h * 0.42, x - h * 0.02, y) | _rect(
        c, x + h * 0.02, y - h * 0.42, x + h * 0.1, y
    )
    c.paint(legs, name, _random_color(rng) * 0.6, texture=5.0, instance=iid)
    c.paint(torso, name, _random_color(rng), texture=5.0, instance=iid)
    c.paint(head, name, _jitter(rng, (200, 160, 130), 25), texture=3.0, instance=iid)


def _paint_objects(s: _Scene) -> None:
    c, rng = s.c, s.c.rng
    objects: list[tuple[float, Callable[[], None]]] = []

    def add(y: float, fn: Callable[[], None]) -> None:
        objects.append((y, fn))

    span = c.h - s.horizon
    for _ in range(rng.poisson(3.5)):
        y = s.horizon + span * rng.uniform(0.05, 1.0) ** 0.8
        left, right = s.road_edges(y)
        x = rng.uniform(left, right)
        r = rng.random()
        name = "car" if r < 0.85 else ("truck" if r < 0.94 else "bus")
        add(y, lambda x=x, y=y, name=name: _paint_car(s, x, y, name))
    for _ in range(rng.poisson(3.0)):
        y = s.horizon + span * rng.uniform(0.05, 1.0)
        wl, wr = s.walk_edges(y)
        rl, rr = s.road_edges(y)
        x = rng.uniform(wl, rl) if rng.random() < 0.5 else rng.uniform(rr, wr)
        if rng.random() < 0.15:
            x = rng.uniform(rl, rr)  # crossing the road
        add(y, lambda x=x, y=y: _paint_person(s, x, y))
    for _ in range(s.riders):
        y = s.horizon + span * rng.uniform(0.2, 1.0)
        rl, rr = s.road_edges(y)
        vehicle = "bicycle" if rng.random() < 0.6 else "motorcycle"
        x = rng.uniform(rl, rr)
        add(y, lambda x=x, y=y, v=vehicle: _paint_person(s, x, y, rider=v))
    for _ in range(rng.poisson(2.0)):
        y = s.horizon + span * rng.uniform(0.05, 0.9)
        wl, wr = s.walk_edges(y)
        rl, rr = s.road_edges(y)
        x = (wl + rl) / 2 if rng.random() < 0.5 else (wr + rr) / 2
        add(y, lambda x=x, y=y: _paint_pole(s, x, y))
    if s.tram:
        y = s.horizon + span * rng.uniform(0.35, 0.8)
        add(y, lambda y=y: _paint_tram(s, y))
    # Far first, so nearer objects occlude them.
    for _, draw in sorted(objects, key=lambda item: item[0]):
        draw()


def _finish(s: _Scene) -> None:
    c, rng = s.c, s.c.rng
    # Cast shadows darken whatever they fall on, whatever its class.
    for _ in range(rng.poisson(1.5)):
        shadow = _ellipse(
            c,
            rng.uniform(0, c.w),
            rng.uniform(s.horizon, c.h),
            rng.uniform(0.05, 0.3) * c.w,
            rng.uniform(0.03, 0.12) * c.h,
        )
        c.img[shadow] *= rng.uniform(0.45, 0.75)
    if s.condition == "fog":  # contrast fades with distance from the camera
        far = 1.0 - s.depth(np.maximum(c.yy, s.horizon))
        far = np.where(c.yy < s.horizon, 1.0, far) * rng.uniform(0.6, 0.9)
        grey = rng.uniform(150, 200)
        c.img = c.img * (1 - far[..., None]) + grey * far[..., None]
    elif s.condition == "dusk":  # dark, bluish, low contrast
        c.img = c.img * rng.uniform(0.25, 0.4) + np.array([5, 8, 20], np.float32)
    c.img *= rng.uniform(0.6, 1.25)  # global illumination
    c.img += rng.normal(0, rng.uniform(2, 9), c.img.shape).astype(np.float32)
    if rng.random() < 0.25:  # ego-vehicle bonnet: void in Cityscapes, ignored in training
        hood = c.yy > c.h - rng.uniform(0.04, 0.1) * c.h + 6 * ((c.xx / c.w - 0.5) ** 2) * 4
        c.paint(hood, "ego vehicle", _jitter(rng, (40, 40, 45), 10), texture=3.0)


def render_scene(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic street scene.

    Returns image (H, W, 3) uint8, label ids (H, W) uint8 and instance ids (H, W) int32.
    """
    canvas = _Canvas(height, width, rng)
    scene = _Scene(canvas)
    _paint_background(scene)
    _paint_ground(scene)
    _paint_objects(scene)
    _finish(scene)
    image = np.clip(canvas.img, 0, 255).astype(np.uint8)
    return image, canvas.label, canvas.inst
