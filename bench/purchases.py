"""What each acquisition round bought, by class: the labelled pixels of every delivery
of finished label-efficiency runs, against the pool's own class mix.

For every run folder (``<unit>-<strategy>-s<seed>``) of one or more
``bench/label_efficiency.py --work`` folders and every acquisition round k >= 1: the
pixels its delivery labelled (``r<k>/delivery/*.png``, train ids, 255 = not labelled),
their share by class, the images touched and the true cost (the labelled set's
history). Then, per unit and strategy, means over seeds: the class shares round by
round beside the pool's (all pool images' ground truth, i.e. what random whole images
buy on average), the same for the instances each round paid for (its cost by class),
and the val IoU of every class after each round (``r<k>/metrics.json``), under the
ceiling's (``--ceilings``: ``alseg evaluate --json`` of its checkpoints). A curve that
loses to another shows here which classes its rounds paid for and which they skipped.

    .venv/bin/python bench/purchases.py --work <work> [<work> ...] --out <report.md>
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import footer  # noqa: E402
from label_efficiency import RUN_FOLDER as RUN  # noqa: E402


def _hist(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    from alseg_core.active.balance import class_counts

    return class_counts([np.asarray(Image.open(p)) for p in paths])


def key_class(key: str) -> int:
    """The train id of an instance key (``i<instance id>`` or ``s<train id>_<k>``)."""
    from alseg_core.datasets.labels import ID_TO_TRAIN_ID

    if key.startswith("i"):
        return int(ID_TO_TRAIN_ID[int(key[1:]) // 1000])
    return int(key[1:].split("_", 1)[0])


def _key_hist(keys) -> np.ndarray:
    from alseg_core.types import NUM_CLASSES

    classes = [key_class(k) for k in keys]
    return np.bincount([c for c in classes if c < NUM_CLASSES], minlength=NUM_CLASSES)


def pool_mix(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, instances) by class over the ground truth of the run's pool images:
    instances as the oracle charges them (one per thing, one per stuff component)."""
    from alseg_core.active.balance import class_counts
    from alseg_core.active.costs import component_map
    from alseg_core.datasets import cityscapes
    from alseg_core.types import NUM_CLASSES

    pool = json.loads((run / "pool.json").read_text())
    pixels = np.zeros(NUM_CLASSES, np.int64)
    instances = np.zeros(NUM_CLASSES, np.int64)
    for item in pool["pool"]:
        sample = cityscapes.Sample(**item)
        label = cityscapes.read_label(sample)
        ids = cityscapes.read_instances(sample, shape=label.shape) if sample.instance_url else None
        pixels += class_counts([label])
        instances += _key_hist(component_map(label, ids)[1])
    return pixels, instances


def read_run(run: Path) -> list[dict]:
    """One dict per acquisition round whose delivery and model's metrics are there."""
    from alseg_core.labels import LabelState, load_state

    rounds = sorted(int(p.name[1:]) for p in run.glob("r[0-9]*") if p.name[1:].isdigit())
    done = [k for k in rounds if k >= 1 and (run / f"r{k}" / "metrics.json").exists()]
    if not done:
        return []
    states = {k: load_state(str(run / f"r{k}" / "labelled")) for k in [0, *done]}
    history = states[done[-1]].history
    out = []
    for k in done:
        pngs = sorted((run / f"r{k}" / "delivery").glob("*.png"))
        metrics = json.loads((run / f"r{k}" / "metrics.json").read_text())
        before, after = states.get(k - 1, LabelState()), states[k]
        new = [after.instance_keys(i) - before.instance_keys(i) for i in after.images]
        new_keys = [key for keys in new for key in keys]
        out.append({
            "round": k, "pixels": _hist(pngs), "images": len(pngs),
            "cost": sum(h.cost for h in history if h.round == k),
            "instances": _key_hist(new_keys),
            "iou": metrics["per_class_IoU"], "miou": metrics["mIoU"],
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    from alseg_core.datasets.labels import TRAIN_CLASS_NAMES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=None, help="markdown file (default: stdout)")
    ap.add_argument("--ceilings", type=Path, nargs="*", default=[],
                    help="`alseg evaluate --json` of the ceiling's checkpoints (a row above "
                    "the rounds' IoU: the mean of these)")  # fmt: skip
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

    def share_table(field: str, pool: np.ndarray, intro: str) -> list[str]:
        """Per unit, strategy and round: seeds, images, cost, pixels per cost and the
        class shares of ``field`` (mean over seeds), under a 'pool' row."""
        out = [intro, "", "| unit | strategy | round | seeds | images | cost | px / cost | "
               + " | ".join(names) + " |", "|" + "---|" * (7 + len(names)),
               "| pool | - | - | - | - | - | - | "
               + " | ".join(f"{100 * v:.1f}" for v in pool / pool.sum()) + " |"]  # fmt: skip
        for (unit, strategy), seeds in sorted(by_kind.items()):
            for i in range(min(len(r) for r in seeds)):
                rows = [r[i] for r in seeds]
                share = np.mean([r[field] / max(1, r[field].sum()) for r in rows], axis=0)
                px = np.mean([r["pixels"].sum() / max(1, r["cost"]) for r in rows])
                out.append(
                    f"| {unit} | {strategy} | {rows[0]['round']} | {len(rows)} | "
                    f"{np.mean([r['images'] for r in rows]):.0f} | "
                    f"{np.mean([r['cost'] for r in rows]):.0f} | {px:.0f} | "
                    + " | ".join(f"{100 * v:.1f}" for v in share) + " |"
                )  # fmt: skip
        return out

    lines = ["# What each round bought, by class", ""]
    lines += share_table(
        "pixels", mix[0],
        "Share of the round's labelled pixels by class (%), mean over seeds; 'pool': the "
        "class mix of all pool images' ground truth (what random whole images buy on "
        "average). images: images the delivery touched; cost: true cost charged; px / "
        "cost: labelled pixels per cost unit.",
    )  # fmt: skip
    lines += [""] + share_table(
        "instances", mix[1],
        "Share of the round's cost by class (%): the instances it labelled for the first "
        "time (one cost unit each: a thing, or a stuff component), mean over seeds; "
        "'pool': the instances of all pool images.",
    )  # fmt: skip
    ceiling_note = "; 'ceiling': full supervision, the mean of the --ceilings checkpoints"
    lines += [
        "",
        "Val IoU by class after each round, mean over seeds (the model trained on the "
        "labelled set up to that round), and mIoU" + (ceiling_note if args.ceilings else "")
        + ":",
        "",
        "| unit | strategy | round | mIoU | " + " | ".join(names) + " |",
        "|" + "---|" * (4 + len(names)),
    ]  # fmt: skip
    if args.ceilings:
        evals = [json.loads(p.read_text()) for p in args.ceilings]
        iou = [np.mean([e["per_class_IoU"][c] or 0.0 for e in evals]) for c in names]
        mean = np.mean([e["mIoU"] for e in evals])
        lines.append(
            f"| ceiling | - | - | {mean:.4f} | " + " | ".join(f"{v:.2f}" for v in iou) + " |"
        )
    for (unit, strategy), seeds in sorted(by_kind.items()):
        for i in range(min(len(r) for r in seeds)):
            rows = [r[i] for r in seeds]
            iou = [np.mean([r["iou"][c] or 0.0 for r in rows]) for c in names]
            lines.append(
                f"| {unit} | {strategy} | {rows[0]['round']} | "
                f"{np.mean([r['miou'] for r in rows]):.4f} | "
                + " | ".join(f"{v:.2f}" for v in iou) + " |"
            )  # fmt: skip
    command = "bench/purchases.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(lines) + "\n" + footer(start, f".venv/bin/python {command}")
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
