"""The README's example heatmap and guide: one round of `alseg run` on the synthetic
default, then the first requested image's heatmap and guide, enlarged 3x (nearest).

    .venv/bin/python bench/request_example.py     # ~3 min on 2 CPU cores
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PARAMS = """\
data: {{root: {work}/data}}
synthetic: {{n_train: 120, n_val: 10, height: 128, width: 256, seed: 0}}
superpixels: {{store: {work}/sp}}
model: {{name: lraspp_mobilenet_v3_large}}
al: {{rounds: 1, initial_images: 40, budget_per_round: 150, train_steps: 300, out: {work}/run}}
"""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="alseg-example-"))
    (work / "params.yaml").write_text(PARAMS.format(work=work))
    alseg = [str(Path(sys.executable).parent / "alseg"), "--params", str(work / "params.yaml"),
             "--no-progress"]  # fmt: skip
    subprocess.run([*alseg, "make-synthetic"], check=True)
    subprocess.run([*alseg, "run"], check=True)
    request = work / "run" / "r1" / "request"
    first = sorted((request / "heatmaps").glob("*.png"))[0].name
    out = HERE / "results"
    for folder in ("heatmaps", "guides"):
        img = Image.open(request / folder / first)
        big = img.resize((img.width * 3, img.height * 3), Image.NEAREST)
        big.save(out / f"request_example_{folder[:-1]}.png")
        print(f"wrote {out / f'request_example_{folder[:-1]}.png'} ({first})")
    assert np.asarray(big).shape[2] == 3


if __name__ == "__main__":
    main()
