"""Strategies: one registered object each, composing scorer -> aggregation -> selection.

A :class:`Strategy` names a pixel scorer (``PixelStats -> (N, H, W)``, higher = more
informative), the units it supports and whether it needs MC dropout passes. Aggregation
to regions (:func:`region_means`) and selection under a budget
(:func:`select_under_budget`) are separate functions it composes, so a strategy works
on arrays from any training loop; the pipeline's Parquet scores file is only how the
score step hands its results to the select step.

Adding a strategy touches one place: ``register_strategy`` (also from user code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from alseg_core.active.regions import region_means
from alseg_core.active.selection import (
    IMAGE_UNIT,
    SUPERPIXEL_UNIT,
    UNITS,
    Candidate,
    Chosen,
    calibrated,
    candidates_for_image,
    select_diverse,
    select_greedy,
    select_under_budget,
)

if TYPE_CHECKING:
    from alseg_core.active.scorers import PixelStats
    from alseg_core.labels import LabelState

PixelScorer = Callable[["PixelStats"], Any]


@dataclass(frozen=True)
class Strategy:
    """name; scorer (None: no pixel scores); units it supports; needs D dropout passes;
    ``random_order``: select in a seeded random order instead of by score;
    ``loss_prediction``: the image score is the model's predicted loss (Yoo & Kweon), so
    training attaches a loss-prediction module."""

    name: str
    scorer: PixelScorer | None = None
    units: tuple[str, ...] = UNITS
    needs_mc: bool = False
    random_order: bool = False
    loss_prediction: bool = False
    description: str = ""
    # Selection beyond the reference (``select_greedy``); all off for the reference ones.
    per_cost: bool = False
    marginal_cost: bool = False
    max_per_image: int | None = None
    diverse: bool = False  # k-centre greedy over a shortlist (``select_diverse``)
    # Rank superpixels by the predicted instances they reveal (``select_greedy``'s
    # reveal): "mass" = each instance's summed score, "mean" = its mean score per pixel.
    reveal: str | None = None
    column: str | None = None  # scores-table column (default: the name)

    def __post_init__(self) -> None:
        unknown = set(self.units) - set(UNITS)
        if not self.units or unknown:
            raise ValueError(
                f"strategy {self.name!r}: units must be among {UNITS}, got {self.units}"
            )
        if self.reveal not in (None, "mass", "mean"):
            raise ValueError(
                f"strategy {self.name!r}: reveal must be 'mass', 'mean' or None, got "
                f"{self.reveal!r}"
            )
        if self.reveal and not (self.marginal_cost and self.units == (SUPERPIXEL_UNIT,)):
            raise ValueError(
                f"strategy {self.name!r}: reveal ranks superpixels by the instances they "
                "reveal; it needs marginal_cost and units ('superpixel',)"
            )

    @property
    def has_pixel_scores(self) -> bool:
        return self.scorer is not None

    @property
    def scores_column(self) -> str:
        """The ``image_<c>`` / ``region_<c>`` columns its scores live in."""
        return self.column or self.name

    @property
    def plain(self) -> bool:
        """Greedy by score with independent costs: the reference's selection."""
        return not (
            self.per_cost or self.marginal_cost or self.max_per_image or self.diverse
            or self.reveal
        )  # fmt: skip

    def pixel_scores(self, stats: PixelStats) -> Any:
        """(N, H, W) scores; numpy in (``PixelStats.from_samples``) gives torch out."""
        if self.scorer is None:
            raise ValueError(f"strategy {self.name!r} has no pixel scorer")
        return self.scorer(stats)

    def region_scores(
        self, pixel_scores: np.ndarray, region_map: np.ndarray, *, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """(n_regions,) mean pixel score per superpixel over ``valid`` pixels."""
        n = int(np.asarray(region_map).max()) + 1
        return region_means(pixel_scores, region_map, n_regions=n, valid=valid)

    def select(
        self,
        candidates: Sequence[Candidate],
        budget: int,
        *,
        rng: np.random.Generator | None = None,
        cost_factor: float = 1.0,
    ) -> Chosen:
        """Choose under ``budget`` (costs x ``cost_factor``); random order needs ``rng``.

        Returns the candidates as given; ``spent`` is in calibrated costs and
        ``Chosen.bought_at()`` the raw estimate each was bought at (with marginal cost,
        less than its ``est_cost``).
        """
        if self.random_order and rng is None:
            raise ValueError(f"strategy {self.name!r} selects in random order: pass rng")
        if self.plain:
            raw = {(c.image_id, c.region): c for c in candidates}
            chosen = select_under_budget(
                calibrated(list(candidates), cost_factor), budget,
                rng=rng if self.random_order else None,
            )  # fmt: skip
            picked = tuple(raw[(c.image_id, c.region)] for c in chosen.candidates)
            return Chosen(picked, chosen.budget, chosen.spent)
        if self.diverse:
            return select_diverse(candidates, budget, cost_factor=cost_factor)
        return select_greedy(
            candidates, budget, per_cost=self.per_cost, marginal_cost=self.marginal_cost,
            max_per_image=self.max_per_image, cost_factor=cost_factor,
            reveal=self.reveal is not None,
        )  # fmt: skip

    def check_unit(self, unit: str) -> None:
        if unit not in UNITS:
            raise ValueError(f"al.unit must be 'image' or 'superpixel', got {unit!r}")
        if unit not in self.units:
            raise ValueError(
                f"al.strategy {self.name!r} scores {' and '.join(self.units)} units only: "
                f"use al.unit {self.units[0]!r}"
            )

    def candidates(
        self, rows: Iterable[Mapping], state: LabelState, *, unit: str
    ) -> list[Candidate]:
        """Every unit of the scored ``rows`` not yet labelled, with score and estimated cost.

        rows: the scores table's rows (``image_id``, ``image_est_cost``,
        ``region_est_cost`` and ``image_<name>`` / ``region_<name>`` for this strategy).
        """
        self.check_unit(unit)
        out: list[Candidate] = []
        for row in rows:
            image_id = row["image_id"]
            if state.is_fully_labelled(image_id):
                continue
            column = self.scores_column
            if unit == IMAGE_UNIT:
                score = 0.0 if self.random_order else _column(row, f"image_{column}")
                pixels = int(row.get("height", 0)) * int(row.get("width", 0))
                emb = _embedding(row, "image_embedding") if self.diverse else None
                out.append(
                    Candidate(image_id, -1, float(score), int(row["image_est_cost"]), pixels,
                              embedding=emb)
                )  # fmt: skip
                continue
            costs = row["region_est_cost"]
            scores = [0.0] * len(costs) if self.random_order else _column(row, f"region_{column}")
            out += candidates_for_image(
                image_id, scores, costs, labelled_regions=state.labelled_regions(image_id),
                region_pixels=row.get("region_pixels"),
                region_components=row.get("region_components") if self.marginal_cost else None,
                region_embeddings=(
                    _embedding(row, "region_embedding").reshape(len(costs), -1)
                    if self.diverse else None
                ),
                component_gains=self._instance_gains(row),
            )  # fmt: skip
        return out

    def _instance_gains(self, row: Mapping) -> list[float] | None:
        """Per predicted instance of the row's image, what revealing it is worth."""
        if self.reveal is None:
            return None
        mass = np.asarray(_column(row, f"component_{self.scores_column}"), np.float64)
        if self.reveal == "mass":
            return mass.tolist()
        pixels = np.asarray(_column(row, "component_pixels"), np.float64)
        return np.where(pixels > 0, mass / np.maximum(pixels, 1.0), 0.0).tolist()


def _embedding(row: Mapping, key: str) -> np.ndarray:
    """A float16 feature-vector column of the scores table, as float32."""
    if row.get(key) is None:
        raise ValueError(
            f"{row.get('image_id')}: scores have no {key!r} (ScoreParams.embed_dim 0, or "
            "an older version: score again) but the strategy selects for diversity"
        )
    return np.frombuffer(row[key], np.float16).astype(np.float32)


def _column(row: Mapping, key: str) -> Any:
    if key not in row:
        have = sorted(k for k in row if k.startswith(("image_", "region_")))
        raise ValueError(f"scores have no column {key!r} (columns: {have})")
    value = row[key]
    if isinstance(value, list):
        return [np.nan if v is None else v for v in value]
    return np.nan if value is None else value


STRATEGY_REGISTRY: dict[str, Strategy] = {}


@overload
def register_strategy(strategy: Strategy, /) -> Strategy: ...
@overload
def register_strategy(
    name: str, /, *, units: tuple[str, ...] = ..., needs_mc: bool = ..., description: str = ...
) -> Callable[[PixelScorer], PixelScorer]: ...


def register_strategy(
    strategy: Strategy | str,
    /,
    *,
    units: tuple[str, ...] = UNITS,
    needs_mc: bool = False,
    description: str = "",
) -> Strategy | Callable[[PixelScorer], PixelScorer]:
    """Register a :class:`Strategy`, or use as ``@register_strategy("name", ...)`` on a
    scorer ``PixelStats -> (N, H, W)``. A name already registered is refused."""
    if isinstance(strategy, Strategy):
        if strategy.name in STRATEGY_REGISTRY:
            raise ValueError(f"strategy {strategy.name!r} is already registered")
        STRATEGY_REGISTRY[strategy.name] = strategy
        return strategy

    def deco(scorer: PixelScorer) -> PixelScorer:
        register_strategy(Strategy(strategy, scorer, units, needs_mc, description=description))
        return scorer

    return deco


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGY_REGISTRY:
        raise ValueError(f"al.strategy must be one of {tuple(STRATEGY_REGISTRY)}, got {name!r}")
    return STRATEGY_REGISTRY[name]


def check_strategy(strategy: str, unit: str) -> None:
    """ValueError unless ``strategy`` is registered and supports ``unit``."""
    get_strategy(strategy).check_unit(unit)


#: Diversity cap of ``mc_variance_plus``: superpixels (or images) per image per round.
MAX_PER_IMAGE = 8


def _builtin(name: str) -> PixelScorer:
    """A built-in scorer of ``alseg_core.active.scorers``, imported (torch) on first use."""

    def scorer(stats: PixelStats) -> Any:
        from alseg_core.active import scorers

        return getattr(scorers, name)(stats)

    scorer.__name__ = scorer.__qualname__ = name
    return scorer


def _register_builtins() -> None:
    lazy = _builtin

    for strategy in (
        Strategy("random", random_order=True, description="a seeded random order"),
        Strategy("softmax_entropy", lazy("softmax_entropy"), description="H(p), one pass"),
        Strategy("mc_entropy", lazy("mc_entropy"), needs_mc=True, description="H(E[p])"),
        Strategy(
            "mc_variance", lazy("mc_variance"), needs_mc=True,
            description="mean per-class Var[p] (the reference's best)",
        ),
        Strategy("bald", lazy("bald"), needs_mc=True, description="H(E[p]) - E[H(p)]"),
        Strategy(
            "learning_loss", units=(IMAGE_UNIT,), loss_prediction=True,
            description="predicted loss (Yoo & Kweon 2019), whole images",
        ),
        # Beyond the reference (each a modifier of MC variance, compared with it):
        Strategy(
            "mc_variance_balanced", lazy("class_balanced_mc_variance"), needs_mc=True,
            description="MC variance x rarity of the predicted class in the labelled set "
            "(median-frequency weights; cf. Cai et al. 2021 class-balanced acquisition)",
        ),
        Strategy(
            "mc_variance_rare", lazy("rarity_weighted_mc_variance"), needs_mc=True,
            description="mean over classes of Var[p(c)] x the rarity of class c in the "
            "labelled set: classes the model does not predict yet still count",
        ),
        Strategy(
            "ripu", lazy("ripu"),
            description="region impurity (entropy of the predicted classes in a 3x3-cell "
            "window) x softmax entropy (Xie et al., CVPR 2022)",
        ),
        Strategy(
            "mc_variance_per_cost", lazy("mc_variance"), needs_mc=True, per_cost=True,
            marginal_cost=True, column="mc_variance",
            description="MC variance x pixels per estimated cost, each predicted "
            "instance paid once in the greedy pass",
        ),
        Strategy(
            "mc_variance_plus", lazy("class_balanced_mc_variance"), needs_mc=True,
            per_cost=True, marginal_cost=True, max_per_image=MAX_PER_IMAGE,
            column="mc_variance_balanced",
            description="class-balanced MC variance per cost, marginal cost, at most "
            f"{MAX_PER_IMAGE} units of one image a round",
        ),
        Strategy(
            "mc_variance_diverse", lazy("mc_variance"), needs_mc=True, diverse=True,
            column="mc_variance",
            description="k-centre greedy (Sener & Savarese 2018) on trunk features over the "
            "most MC-variant units worth 3x the budget (Yang et al. 2017)",
        ),
        Strategy(
            "mc_variance_instances", lazy("class_balanced_mc_variance"), needs_mc=True,
            units=(SUPERPIXEL_UNIT,), marginal_cost=True, reveal="mass",
            column="mc_variance_balanced",
            description="class-balanced MC variance summed over the predicted instances a "
            "superpixel reveals whole, per marginal cost, each instance counted once "
            "(information and cost per region as in CEREALS, Mackowiak et al. 2018)",
        ),
        Strategy(
            "mc_variance_instance_mean", lazy("class_balanced_mc_variance"), needs_mc=True,
            units=(SUPERPIXEL_UNIT,), marginal_cost=True, reveal="mean",
            column="mc_variance_balanced",
            description="as mc_variance_instances, but each revealed instance is worth its "
            "mean score, whatever its size: instances, not pixels, are the unit of "
            "information (large stuff components no longer outweigh small objects)",
        ),
    ):  # fmt: skip
        register_strategy(strategy)


def pixel_strategies() -> list[Strategy]:
    """Registered strategies that own a pixel-score column, in registration order."""
    return [
        s for s in STRATEGY_REGISTRY.values() if s.has_pixel_scores and s.scores_column == s.name
    ]


_register_builtins()

__all__ = [
    "IMAGE_UNIT",
    "STRATEGY_REGISTRY",
    "SUPERPIXEL_UNIT",
    "Strategy",
    "check_strategy",
    "get_strategy",
    "pixel_strategies",
    "register_strategy",
]
