"""Step: add a round to the learning curve (CSV, headline metrics, plot)."""

from __future__ import annotations

import csv
import io

from alseg_core import storage
from alseg_core.active.costs import full_image_cost
from alseg_core.labels import LabelState, load_state
from alseg_core.pipeline.pool import Pool
from alseg_core.plots import learning_curve

CURVE_FIELDS = ["round", "labelled_cost", "pct_full_cost", "n_images", "n_regions", "mIoU"]


def pool_full_cost(pool: Pool) -> int:
    """Cost of labelling every pool image (reads ground truth: reporting only)."""
    return sum(full_image_cost(s) for s in pool.samples.values())


def round_row(k: int, metrics: dict, state: LabelState, full_cost: int) -> dict:
    """One learning-curve point: round ``k``'s model and the labels it was trained on."""
    return {
        "round": k,
        "labelled_cost": state.total_cost,
        "pct_full_cost": round(100.0 * state.total_cost / full_cost, 3),
        "n_images": len(state.images),
        "n_regions": sum(len(e.regions) for e in state.images.values()),
        "mIoU": round(metrics["mIoU"], 5),
    }


def csv_text(rows: list[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_curve(previous: str) -> tuple[list[dict], int | None]:
    """(rows, full cost) of an earlier round's publish folder."""
    text = storage.read_text(storage.join(previous, "curve.csv"))
    rows = [
        {k: (float(v) if k in ("pct_full_cost", "mIoU") else int(v)) for k, v in r.items()}
        for r in csv.DictReader(io.StringIO(text))
    ]
    summary = storage.read_json(storage.join(previous, "metrics.json"))
    return rows, summary.get("full_cost")


def publish_step(
    round_: int,
    *,
    metrics: str,
    labelled: str,
    previous: str | None,
    out: str,
    pool: Pool,
    label: str,
    title: str = "alseg learning curve",
    latest: tuple[str, str, str] | None = None,
) -> list[dict]:
    """``out``/curve.csv = the previous round's curve + this round; metrics.json; the plot.

    previous : the previous round's publish folder (None for the seed round, whose
    publish computes the pool's full annotation cost once for every later round).
    latest : (headline JSON, per-class JSON, plot PNG) to write as the last published
    round too: a small headline (mIoU, cost, % of full) apart from the 19 class IoUs.
    """
    rows, full = read_curve(previous) if previous else ([], None)
    rows = [r for r in rows if int(r["round"]) != round_]
    full = full or pool_full_cost(pool)
    report = storage.read_json(metrics)
    row = round_row(round_, report, load_state(labelled), full)
    rows.append(row)
    storage.write_bytes(storage.join(out, "curve.csv"), csv_text(rows, CURVE_FIELDS).encode())
    storage.write_json(storage.join(out, "metrics.json"), {**row, "full_cost": full})
    curve = {label: [(float(r["pct_full_cost"]), float(r["mIoU"])) for r in rows]}
    png = storage.join(out, "learning_curve.png")
    learning_curve(curve, png, title=title)
    if latest is not None:
        headline, per_class, plot = latest
        storage.write_json(headline, {**row, "full_cost": full})
        storage.write_json(per_class, {"round": round_, **report["per_class_IoU"]})
        storage.write_bytes(plot, storage.read_bytes(png))  # the same plot, not drawn twice
    return rows
