"""The README's "use the library from your own training loop" example, run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text.split("## Use the library from your own training loop", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_example_selects_the_highest_margin_superpixels():
    from alseg_core.active.strategies import STRATEGY_REGISTRY

    namespace: dict = {}
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(_example(), "README.md", "exec"), namespace)  # noqa: S102
    finally:
        STRATEGY_REGISTRY.pop("margin", None)
    chosen = namespace["chosen"].candidates
    assert len(chosen) == 10 and namespace["chosen"].spent == 10
    assert str([(c.image_id, c.region) for c in chosen]) in out.getvalue()

    # The same ten superpixels, computed here without alseg: mean over the D samples,
    # margin per pixel, mean per 16x16 cell, the ten largest.
    probs = namespace["probs"]
    mean = probs.mean(0)  # (2, 19, 64, 128)
    top = np.sort(mean, axis=1)
    margin = 1.0 - (top[:, -1] - top[:, -2])  # (2, 64, 128)
    cells = margin.reshape(2, 4, 16, 8, 16).mean((2, 4)).reshape(2, 32)
    order = np.argsort(-cells.ravel(), kind="stable")[:10]
    expected = {(["img_a", "img_b"][i // 32], int(i % 32)) for i in order}
    assert {(c.image_id, c.region) for c in chosen} == expected


def test_a_registered_name_is_refused_and_unknown_names_are_named():
    import pytest

    from alseg_core import Strategy, get_strategy, register_strategy

    with pytest.raises(ValueError, match="'mc_variance' is already registered"):
        register_strategy(Strategy("mc_variance"))
    with pytest.raises(ValueError, match=r"al.strategy must be one of \(.*'bald'.*got 'nope'"):
        get_strategy("nope")
    with pytest.raises(ValueError, match="scores image units only: use al.unit 'image'"):
        get_strategy("learning_loss").check_unit("superpixel")
