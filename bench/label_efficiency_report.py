"""The label-efficiency report: curves, equal-cost comparisons and a diagnosis per strategy.

Used by ``bench/label_efficiency.py``; reads its rows (one per strategy, unit, seed,
round), the ceilings and the per-run diagnosis, writes ``<out>.png`` and ``<out>.md``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

Key = tuple[str, str]  # (unit, strategy)


def _interp(xs: np.ndarray, ys: np.ndarray, x: float) -> float | None:
    return float(np.interp(x, xs, ys)) if xs[0] <= x <= xs[-1] else None


def _cost_to_reach(xs: np.ndarray, ys: np.ndarray, target: float) -> float | None:
    for i in range(len(xs)):
        if ys[i] >= target:
            if i == 0:
                return float(xs[0])
            frac = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
            return float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))
    return None


def curves(rows: list[dict]) -> dict[Key, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(unit, strategy) -> mean cost %, mean mIoU and its std over seeds, per round."""
    groups: dict[Key, dict[int, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["unit"], r["strategy"]), {}).setdefault(int(r["round"]), []).append(r)
    stats = {}
    for key, by_round in sorted(groups.items()):
        rounds = sorted(by_round)
        xs = np.array([np.mean([float(r["pct_full_cost"]) for r in by_round[k]]) for k in rounds])
        ys = np.array([np.mean([float(r["mIoU"]) for r in by_round[k]]) for k in rounds])
        sd = np.array([np.std([float(r["mIoU"]) for r in by_round[k]]) for k in rounds])
        stats[key] = (xs, ys, sd)
    return stats


def versus(stats: dict, key: Key, other: Key) -> tuple[list[str], list[bool]]:
    """``key`` minus ``other`` at ``key``'s cost after each round (other interpolated)."""
    mx, mv, mv_sd = stats[key]
    rx, rd, rd_sd = stats[other]
    cells, wins = [], []
    for k in range(1, len(mx)):
        if not rx[0] <= mx[k] <= rx[-1]:
            cells.append(f"r{k} @{mx[k]:.1f}%: outside {other[1]}'s costs")
            continue
        diff = mv[k] - float(np.interp(mx[k], rx, rd))
        margin = max(mv_sd[k], float(np.interp(mx[k], rx, rd_sd)))
        wins.append(bool(diff > margin))
        cells.append(f"r{k} @{mx[k]:.1f}%: {diff:+.4f} (std {margin:.4f})")
    return cells, wins


def every_round(cells: list[str], wins: list[bool]) -> str:
    """'True (n/n)' only if ahead at every acquisition round; a round outside the other
    curve's costs counts as not shown (in the denominator, not among the wins)."""
    every = bool(cells) and len(wins) == len(cells) and all(wins)
    return f"{every} ({sum(wins)}/{len(cells)})"


def _profile(xs, ys, full: float) -> dict:
    at = {pct: _interp(xs, ys, pct) for pct in (10, 25, 50)}
    return {
        "at": {p: (None if v is None else 100 * v / full) for p, v in at.items()},
        "reach95": _cost_to_reach(xs, ys, 0.95 * full),
    }


def _fmt(v: float | None, missing: str = "-") -> str:
    return missing if v is None else f"{v:.1f}%"


def ceiling_line(ceiling: dict) -> str:
    """The ceiling's paragraph: its mIoU (mean and per seed), the equal-steps figure, the
    schedule and each seed's val curve. ``ceiling`` as :func:`summarise` takes it."""
    full = float(np.mean(ceiling["converged"]))
    equal = float(np.mean(ceiling["equal_steps"]))
    return (
        f"Ceiling: full supervision trained to a plateau, mIoU {full:.4f} (seeds: "
        + ", ".join(f"{v:.4f}" for v in ceiling["converged"])
        + f"); with as many optimiser steps as one AL run: {equal:.4f}. "
        f"Schedule and val curve: {ceiling['schedule']}; "
        + "; ".join(
            "seed " + str(c["seed"]) + ": " + " → ".join(f"{m:.3f}" for _, m in c["curve"])
            for c in ceiling["curves"]
        )
        + "."
    )


def summarise(rows: list[dict], ceiling: dict, diagnosis: dict, out: Path, title: str) -> str:
    """Write <out>.png and <out>.md; returns the markdown.

    ceiling: {"converged": [mIoU per seed], "equal_steps": [...], "curves": [...]}.
    diagnosis: (unit, strategy) -> {"cost_per_unit", "pixels_per_cost", "budget",
    "spend_by_round", "still_rising", "per_class"} (the middle three may be None).
    """
    from alseg_core.plots import learning_curve

    full = float(np.mean(ceiling["converged"]))
    stats = curves(rows)
    learning_curve(
        {f"{u} / {s}": list(zip(xs.tolist(), ys.tolist(), strict=True))
         for (u, s), (xs, ys, _) in stats.items()},
        str(out.with_suffix(".png")),
        bands={f"{u} / {s}": sd.tolist() for (u, s), (_, _, sd) in stats.items()},
        reference=full, title=title,
    )  # fmt: skip
    profiles = {key: _profile(xs, ys, full) for key, (xs, ys, _) in stats.items()}
    lines = [
        f"# Label efficiency ({title})",
        "",
        ceiling_line(ceiling),
        "",
        "Values: % of the converged ceiling, mean over seeds, interpolated between rounds "
        "('-' = outside the costs the run covered).",
        "",
        "| unit | strategy | @10% cost | @25% cost | @50% cost | cost for 95% | final mIoU ± std |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, (_xs, ys, sd) in stats.items():
        p = profiles[key]
        lines.append(
            f"| {key[0]} | {key[1]} | {_fmt(p['at'][10])} | {_fmt(p['at'][25])} | "
            f"{_fmt(p['at'][50])} | {_fmt(p['reach95'], 'not reached')} | "
            f"{ys[-1]:.4f} ± {sd[-1]:.4f} |"
        )
    verdicts = _verdicts(stats, profiles)
    if len({r["seed"] for r in rows}) < 2:
        verdicts[2:2] = ["- **One seed only**: no spread over seeds, so every std below is "
                         "0 and 'by more than one std' means only 'ahead' (not tested "
                         "against noise).", ""]  # fmt: skip
    lines += ["", *verdicts, "", *_diagnosis(diagnosis)]
    md = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(md)
    return md


def _score(profile: dict, points: tuple[int, ...] = (10, 25, 50)) -> float:
    """Ranks strategies: lowest cost to 95 %, else the mean % of ceiling at ``points``
    (the costs every compared curve covers: a curve that starts later is not ranked on
    its better half alone)."""
    if profile["reach95"] is not None:
        return 1000 - profile["reach95"]
    values = [profile["at"][c] for c in points if profile["at"].get(c) is not None]
    return float(np.mean(values)) if values else 0.0


def _common_points(profiles: list[dict]) -> tuple[int, ...]:
    """The cost points (10/25/50 %) at which every profile has a value."""
    return tuple(c for c in (10, 25, 50) if all(p["at"].get(c) is not None for p in profiles))


def _verdicts(stats: dict, profiles: dict) -> list[str]:
    lines = ["## Verdicts", ""]
    learned = [k for k in stats if k[1] != "random"]
    if not learned:
        return lines
    common = _common_points([profiles[k] for k in learned])
    best = max(learned, key=lambda k: _score(profiles[k], common))
    chosen = [best] + [k for k in [("superpixel", "mc_variance")] if k in stats and k != best]
    for key in chosen:
        p = profiles[key]
        label = "Best strategy" if key == best else "Reference (superpixel MC variance)"
        lines.append(
            f"- {label}: {key[0]} / {key[1]}: {_fmt(p['at'][10])} / {_fmt(p['at'][25])} / "
            f"{_fmt(p['at'][50])} of the ceiling at 10 / 25 / 50 % of full cost; 95 % "
            + (
                "reached at " + _fmt(p["reach95"]) + " of full cost."
                if p["reach95"]
                else "not reached in the costs covered."
            )
        )
        random = (key[0], "random")
        if random in stats:
            cells, wins = versus(stats, key, random)
            lines.append(
                f"  Minus {key[0]} random at equal cost: " + "; ".join(cells)
                + f". Above random by more than one std at every round: "
                f"{every_round(cells, wins)}."
            )  # fmt: skip
    reach = best and profiles[best]["reach95"]
    lines.append(
        "- Target 95 % of the ceiling at ≤ 25 % of full cost (goal 10 %): "
        + ("met" if reach is not None and reach <= 25 else "NOT met")
        + (f" ({reach:.1f} %)." if reach is not None else " (95 % not reached).")
    )
    sp = [k for k in learned if k[0] == "superpixel"]
    im = [k for k in learned if k[0] == "image"]
    if sp and im:
        bsp = max(sp, key=lambda k: _score(profiles[k], _common_points([profiles[j] for j in sp])))
        bim = max(im, key=lambda k: _score(profiles[k], _common_points([profiles[j] for j in im])))
        cells, wins = versus(stats, bsp, bim)
        lines.append(
            f"- Superpixels vs whole images at equal cost ({bsp[1]} vs {bim[1]}): "
            + "; ".join(cells) + f". Superpixels ahead by more than one std at "
            f"{sum(wins)}/{len(cells)} rounds."
        )  # fmt: skip
        if ("superpixel", "random") in stats:
            cells, wins = versus(stats, bsp, ("superpixel", "random"))
            lines.append(
                f"- Best superpixel strategy ({bsp[1]}) above superpixel random at every "
                f"round by more than one std: {every_round(cells, wins)}."
            )
    return lines


def _diagnosis(diagnosis: dict) -> list[str]:
    if not diagnosis:
        return []
    from alseg_core.datasets.labels import TRAIN_CLASS_NAMES

    budgets = {d.get("budget") for d in diagnosis.values()} - {None}
    budget = f" (budget {budgets.pop()})" if len(budgets) == 1 else ""
    lines = [
        "## Diagnosis (mean over seeds and acquisition rounds)",
        "",
        "True cost spent: what the oracle charged in each acquisition round, against the "
        "budget the selection estimated. Still rising at the cap: the share of round "
        "trainings that ran every chunk the plateau rule allows and gained in the last one "
        "(models limited by steps). '-': not recorded (parts run before they were).",
        "",
        "| unit | strategy | true cost per selected unit | labelled pixels per cost unit "
        f"| true cost spent per round{budget} | trainings still rising at the cap |",
        "|---|---|---|---|---|---|",
    ]
    for (unit, strategy), d in sorted(diagnosis.items()):
        spend = d.get("spend_by_round")
        rising = d.get("still_rising")
        lines.append(
            f"| {unit} | {strategy} | {d['cost_per_unit']:.2f} | {d['pixels_per_cost']:.0f} | "
            + ("-" if not spend else " / ".join(f"{v:.0f}" for v in spend))
            + " | " + ("-" if rising is None else f"{100 * rising:.0f}%") + " |"
        )  # fmt: skip
    lines += ["", "Per-class IoU at the last round (mean over seeds):", ""]
    names = list(TRAIN_CLASS_NAMES)
    lines.append("| unit | strategy | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for (unit, strategy), d in sorted(diagnosis.items()):
        cells = [
            "-" if d["per_class"].get(n) is None else f"{d['per_class'][n]:.2f}" for n in names
        ]
        lines.append(f"| {unit} | {strategy} | " + " | ".join(cells) + " |")
    return lines


def compare(rows: list[dict], reference: Path, preset_name: str, seconds: float) -> str:
    """Markdown: this run's rows against the same (strategy, unit, seed, round) in
    ``reference``; where both runs recorded the weights' digest, whether each round
    trained the same weights (the first that did not is where the runs part)."""
    with open(reference, newline="") as f:
        ref = list(csv.DictReader(f))
    key = lambda r: (r["strategy"], r["unit"], int(r["seed"]), int(r["round"]))  # noqa: E731
    old = {key(r): r for r in ref}
    spread: dict[tuple, list[float]] = {}
    for r in ref:
        spread.setdefault((r["strategy"], r["unit"], int(r["round"])), []).append(float(r["mIoU"]))
    lines = [
        f"# Label efficiency rerun check (preset {preset_name})",
        "",
        f"This run against `{reference.name}`: same strategy, unit, seed and round.",
        "",
        "| strategy | unit | seed | round | cost then | cost now | mIoU then | mIoU now "
        "| difference | std over seeds then | same weights |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    diffs, within, same = [], [], []
    for r in rows:
        k = key(r)
        if k not in old:
            continue
        then, now = float(old[k]["mIoU"]), float(r["mIoU"])
        sd = float(np.std(spread[(k[0], k[1], k[3])]))
        diffs.append(abs(now - then))
        within.append(abs(now - then) <= sd + 1e-9)
        was, now_w = old[k].get("weights") or "", r.get("weights") or ""
        weights = "-" if not (was and now_w) else "yes" if was == now_w else "no"
        if weights != "-":
            same.append(weights == "yes")
        lines.append(
            f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {old[k]['labelled_cost']} | "
            f"{r['labelled_cost']} | {then:.4f} | {now:.4f} | {now - then:+.4f} | {sd:.4f} "
            f"| {weights} |"
        )
    if not diffs:
        raise SystemExit(f"{reference}: no rows in common with this run")
    weights_line = (
        f"Same weights (sha256 of the round's model): {sum(same)}/{len(same)}."
        if same else "Same weights: not recorded in the earlier run ('-')."
    )  # fmt: skip
    lines += [
        "",
        f"Rows compared: {len(diffs)}; largest |difference| in mIoU: {max(diffs):.4f}; "
        f"within the earlier run's std over seeds: {sum(within)}/{len(within)}.",
        weights_line,
        f"Wall time: {seconds / 60:.1f} min.",
    ]
    return "\n".join(lines) + "\n"
