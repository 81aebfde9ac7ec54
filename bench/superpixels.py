"""Superpixel precompute at Cityscapes resolution (1024x2048).

Prints watershed images/s with 1 and 2 worker processes (side by side, same images),
Parquet bytes per image against PNG-encoding the same region map, and the time to
read one map back from the store.

    .venv/bin/python bench/superpixels.py [--n-images 8] [--out bench/results/superpixels.txt]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

from alseg_core import storage  # noqa: E402
from alseg_core.datasets.synthetic import render_scene  # noqa: E402
from alseg_core.superpixels import SuperpixelStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=8)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--out", default=None, help="also write the report here")
    args = parser.parse_args()

    lines = [
        f"machine: {describe()}",
        f"images: {args.n_images} synthetic scenes at {args.width}x{args.height}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        pairs = []
        for i in range(args.n_images):
            image, _, _ = render_scene(np.random.default_rng(i), args.height, args.width)
            url = f"{tmp}/img/{i:04d}_leftImg8bit.png"
            storage.write_png(url, image)
            pairs.append((f"img{i:04d}", url))

        rates = {}
        for workers in (1, 2):
            store = SuperpixelStore(f"{tmp}/sp{workers}")
            start = time.perf_counter()
            store.update(pairs, workers=workers)
            seconds = time.perf_counter() - start
            rates[workers] = args.n_images / seconds
            lines.append(
                f"watershed, {workers} worker(s): {rates[workers]:.2f} images/s "
                f"({seconds:.1f}s, incl. PNG read)"
            )
        lines.append(f"speed-up 2 workers vs 1: {rates[2] / rates[1]:.2f}x")

        store = SuperpixelStore(f"{tmp}/sp1")
        parquet_bytes = sum(Path(p).stat().st_size for p in store.parts())
        png_bytes = 0
        maps = {}
        for image_id, _ in pairs:
            maps[image_id] = store.read(image_id)
            png_bytes += len(storage.encode_png(maps[image_id].astype(np.uint8)))
        lines.append(
            f"Parquet bytes/image: {parquet_bytes / args.n_images:,.0f}  "
            f"PNG of the same map: {png_bytes / args.n_images:,.0f}  "
            f"ratio Parquet/PNG: {parquet_bytes / png_bytes:.2f}"
        )
        fresh = SuperpixelStore(f"{tmp}/sp1")
        start = time.perf_counter()
        for image_id, _ in pairs:
            assert np.array_equal(fresh.read(image_id), maps[image_id])
        per_map = (time.perf_counter() - start) / args.n_images
        lines.append(f"read time per map (cold store, incl. Parquet open): {per_map * 1000:.1f} ms")
        start = time.perf_counter()
        for image_id, _ in pairs:
            fresh.read(image_id)
        warm = (time.perf_counter() - start) / args.n_images
        lines.append(f"read time per map (warm part): {warm * 1000:.1f} ms")
    report = "\n".join(lines)
    print(report)
    if args.out:
        storage.write_bytes(args.out, (report + "\n").encode())


if __name__ == "__main__":
    main()
