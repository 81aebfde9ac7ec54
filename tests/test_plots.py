"""The learning-curve plot."""

from __future__ import annotations

import pytest


def test_the_ceiling_line_is_drawn_clear_of_the_frame(tmp_path):
    """Curves from 0.2 to 0.36: autoscaling tops the axis at 0.368 (a 5 % margin), so a
    ceiling at 0.367 would sit on the frame's top edge, unseen (it did in the quick
    results' PNG: ceiling 0.3764, axis top 0.3767). The axis must clear it by a margin."""
    from alseg_core.plots import learning_curve

    out = tmp_path / "curve.png"
    lo, hi = learning_curve({"a": [(7.0, 0.2), (61.0, 0.36)]}, str(out), reference=0.367)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert hi - 0.367 >= 0.04 * (hi - lo), (lo, hi)
    # Without a reference the axis is matplotlib's own: 0.36 + 5 % of the range.
    assert learning_curve({"a": [(7.0, 0.2), (61.0, 0.36)]}, str(out)) == pytest.approx(
        (0.192, 0.368)
    )
