"""Learning curves: mIoU against annotation cost."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from alseg_core import storage


def learning_curve(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    out_png: str,
    *,
    xlabel: str = "annotation cost (% of full)",
    title: str = "alseg learning curve",
    bands: Mapping[str, Sequence[float]] | None = None,
    reference: float | None = None,
) -> tuple[float, float]:
    """One line per curve of (x, mIoU) points; optional ±std bands and a reference line.

    Returns the y-axis limits drawn: they hold the reference line with a margin above
    it (autoscaling put a ceiling above every curve on the frame's edge, unseen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, points in curves.items():
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        if bands and name in bands:
            std = bands[name]
            ax.fill_between(
                xs,
                [y - s for y, s in zip(ys, std, strict=True)],
                [y + s for y, s in zip(ys, std, strict=True)],
                color=line.get_color(),
                alpha=0.2,
            )
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", label="full supervision")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, max(hi, reference + 0.05 * (max(hi, reference) - lo)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mIoU (val)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    limits = (float(ax.get_ylim()[0]), float(ax.get_ylim()[1]))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    storage.write_bytes(out_png, buf.getvalue())
    return limits
