"""Budget adherence: what each acquisition round of a label-efficiency run really cost,
against the budget its selection filled.

Selection fills ``al.budget_per_round`` with the model's estimated costs: each unit's
raw estimate (predicted instances it overlaps that touch no labelled pixel) times a
calibration factor, at least 1 per unit; the oracle then charges the true cost. The
factor is charged / raw estimated cost over every earlier delivery that had an
estimate; before the first, 1.0 for the superpixel unit, and for the image unit the
instances labelled on the fully labelled images against those the model predicts there
(until 2751d54 the image unit used that ratio in every round).

This reads every run of a ``bench/label_efficiency.py --work`` folder (each round's
``selection.json``, ``scores.parquet`` and labelled-set history) and prints, per run and
round: the budget, the estimate the selection filled it with, the raw estimate, the
true cost, the factor used, the units bought and the share of them estimated free (raw
estimate 0, charged 1 by the floor); then, per unit and strategy, true cost / budget
round by round, the mean over seeds.

    .venv/bin/python bench/budget_adherence.py --work /tmp/work-quick > out.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def read_run(folder: Path) -> list[dict]:
    """One dict per acquisition round delivered in ``folder`` (a run still going has
    its later rounds half done: they are left out)."""
    import pyarrow.parquet as pq

    from alseg_core.labels import load_state
    from alseg_core.pipeline.layout import RoundLayout

    layout = RoundLayout(str(folder))
    rounds = sorted(
        int(p.name[1:]) for p in folder.glob("r[0-9]*")
        if p.name[1:].isdigit() and (p / "labelled" / "state.json").exists()
    )  # fmt: skip
    if not rounds:
        return []
    history = load_state(layout.labelled(rounds[-1])).history
    out = []
    for k in rounds:
        if k == 0:
            continue
        sel = json.loads(Path(layout.selection(k)).read_text())
        scores = {
            r["image_id"]: r
            for r in pq.read_table(
                layout.scores(k), columns=["image_id", "image_est_cost", "region_est_cost"]
            ).to_pylist()
        }
        raw: list[int] = []  # the raw estimate of each unit bought
        for item in sel["items"]:
            row = scores[item["image_id"]]
            if item["regions"]:
                raw += [int(row["region_est_cost"][r]) for r in item["regions"]]
            else:
                raw.append(int(row["image_est_cost"]))
        done = [h for h in history if h.round == k]
        out.append({
            "round": k, "budget": sel["budget"], "filled": sel["estimated_spent"],
            "raw": sum(raw), "cost": sum(h.cost for h in done),
            "factor": sel["cost_calibration"]["factor"], "units": len(raw),
            "free": float(np.mean([e == 0 for e in raw])) if raw else 0.0,
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="a label_efficiency --work folder")
    args = ap.parse_args(argv)
    runs = sorted(p for p in (args.work / "runs").iterdir() if not p.name.startswith("full-"))
    lines = [
        f"# Budget adherence ({args.work.name})",
        "",
        "| run | round | budget | filled with (calibrated estimate) | raw estimate | true cost "
        "| factor used | units | estimated free |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_kind: dict[str, list[list[dict]]] = {}
    for run in runs:
        rounds = read_run(run)
        for r in rounds:
            lines.append(
                f"| {run.name} | {r['round']} | {r['budget']} | {r['filled']} | {r['raw']} | "
                f"{r['cost']} | {r['factor']:.2f} | {r['units']} | {100 * r['free']:.0f}% |"
            )
        if rounds:
            by_kind.setdefault(run.name.rsplit("-s", 1)[0], []).append(rounds)
    lines += [
        "",
        "True cost / budget by acquisition round, and the share of units estimated free, "
        "mean over seeds:",
        "",
        "| unit-strategy | seeds | true cost / budget by round | estimated free by round |",
        "|---|---|---|---|",
    ]
    for name, runs_ in sorted(by_kind.items()):
        n = min(len(r) for r in runs_)
        spend = [np.mean([r[k]["cost"] / r[k]["budget"] for r in runs_]) for k in range(n)]
        free = [np.mean([r[k]["free"] for r in runs_]) for k in range(n)]
        lines.append(
            f"| {name} | {len(runs_)} | " + " / ".join(f"{v:.2f}" for v in spend) + " | "
            + " / ".join(f"{100 * v:.0f}%" for v in free) + " |"
        )  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
