"""What each acquisition round bought, by class: the labelled pixels of every delivery
of finished label-efficiency runs, against the pool's own class mix.

For every run folder (``<unit>-<strategy>-s<seed>``) of one or more
``bench/label_efficiency.py --work`` folders and every acquisition round k >= 1: the
pixels its delivery labelled (``r<k>/delivery/*.png``, train ids, 255 = not labelled),
their share by class, the images touched and the true cost (the labelled set's
history). Then, per unit and strategy, means over seeds: the class shares round by
round beside the pool's (all pool images' ground truth, i.e. what random whole images
buy on average), and the val IoU of the small classes after each round (``r<k>/
metrics.json``). A curve that loses to another shows here which classes its rounds paid
for and which they skipped.

    .venv/bin/python bench/purchases.py --work <work> [<work> ...] --out <report.md>
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import footer  # noqa: E402

RUN = re.compile(r"^(image|superpixel)-(.+)-s(\d+)$")
#: The classes every curve leaves near 0 IoU (and traffic sign, person: low but moving).
SMALL = ("wall", "fence", "pole", "traffic light", "traffic sign", "person", "rider",
         "motorcycle", "bicycle")  # fmt: skip


def _hist(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    from alseg_core.types import NUM_CLASSES

    counts = np.zeros(NUM_CLASSES, np.int64)
    for p in paths:
        label = np.asarray(Image.open(p))
        counts += np.bincount(label[label < NUM_CLASSES].ravel(), minlength=NUM_CLASSES)
    return counts


def pool_mix(run: Path) -> np.ndarray:
    """Pixel counts by class over the ground truth of the run's pool images."""
    from alseg_core.datasets import cityscapes
    from alseg_core.types import NUM_CLASSES

    pool = json.loads((run / "pool.json").read_text())
    counts = np.zeros(NUM_CLASSES, np.int64)
    for item in pool["pool"]:
        label = cityscapes.read_label(cityscapes.Sample(**item))
        counts += np.bincount(label[label < NUM_CLASSES].ravel(), minlength=NUM_CLASSES)
    return counts


def read_run(run: Path) -> list[dict]:
    """One dict per acquisition round whose delivery and model's metrics are there."""
    from alseg_core.labels import load_state

    rounds = sorted(int(p.name[1:]) for p in run.glob("r[0-9]*") if p.name[1:].isdigit())
    done = [k for k in rounds if k >= 1 and (run / f"r{k}" / "metrics.json").exists()]
    if not done:
        return []
    history = load_state(str(run / f"r{done[-1]}" / "labelled")).history
    out = []
    for k in done:
        pngs = sorted((run / f"r{k}" / "delivery").glob("*.png"))
        metrics = json.loads((run / f"r{k}" / "metrics.json").read_text())
        out.append({
            "round": k, "pixels": _hist(pngs), "images": len(pngs),
            "cost": sum(h.cost for h in history if h.round == k),
            "iou": metrics["per_class_IoU"], "miou": metrics["mIoU"],
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    from alseg_core.datasets.labels import TRAIN_CLASS_NAMES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=None, help="markdown file (default: stdout)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    runs = sorted((r for w in args.work for r in (w / "runs").iterdir() if RUN.match(r.name)),
                  key=lambda r: r.name)  # fmt: skip
    by_kind: dict[tuple[str, str], list[list[dict]]] = {}
    mix = None
    for run in runs:
        unit, strategy, _ = RUN.match(run.name).groups()
        rounds = read_run(run)
        if rounds:
            by_kind.setdefault((unit, strategy), []).append(rounds)
            if mix is None:
                mix = pool_mix(run)
    if mix is None:
        raise SystemExit(f"{[str(w) for w in args.work]}: no finished run with deliveries")
    names = list(TRAIN_CLASS_NAMES)
    head = "| unit | strategy | round | seeds | images | cost | px / cost | " + " | ".join(
        names
    ) + " |"  # fmt: skip
    lines = [
        "# What each round bought, by class",
        "",
        "Share of the round's labelled pixels by class (%), mean over seeds; 'pool': the "
        "class mix of all pool images' ground truth (what random whole images buy on "
        "average). images: images the delivery touched; cost: true cost charged; px / "
        "cost: labelled pixels per cost unit.",
        "",
        head,
        "|" + "---|" * (7 + len(names)),
        "| pool | - | - | - | - | - | - | "
        + " | ".join(f"{100 * v:.1f}" for v in mix / mix.sum())
        + " |",
    ]
    iou_lines = [
        "",
        "Val IoU of the small classes after each round, mean over seeds (the model trained "
        "on the labelled set up to that round), and mIoU:",
        "",
        "| unit | strategy | round | mIoU | " + " | ".join(SMALL) + " |",
        "|" + "---|" * (4 + len(SMALL)),
    ]
    for (unit, strategy), seeds in sorted(by_kind.items()):
        n = min(len(r) for r in seeds)
        for i in range(n):
            rows = [r[i] for r in seeds]
            share = np.mean([r["pixels"] / max(1, r["pixels"].sum()) for r in rows], axis=0)
            px = np.mean([r["pixels"].sum() / max(1, r["cost"]) for r in rows])
            lines.append(
                f"| {unit} | {strategy} | {rows[0]['round']} | {len(rows)} | "
                f"{np.mean([r['images'] for r in rows]):.0f} | "
                f"{np.mean([r['cost'] for r in rows]):.0f} | {px:.0f} | "
                + " | ".join(f"{100 * v:.1f}" for v in share) + " |"
            )  # fmt: skip
            iou = [np.mean([r["iou"][c] for r in rows]) for c in SMALL]
            iou_lines.append(
                f"| {unit} | {strategy} | {rows[0]['round']} | "
                f"{np.mean([r['miou'] for r in rows]):.4f} | "
                + " | ".join(f"{v:.2f}" for v in iou) + " |"
            )  # fmt: skip
    command = "bench/purchases.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(lines + iou_lines) + "\n" + footer(start, f".venv/bin/python {command}")
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
