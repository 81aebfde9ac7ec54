"""Where a round's files live and what its stages are called: defined once, here.

The CLI, ``alseg run``, ``dvc.yaml`` (generated from this module), the Prefect tasks
and the flow all use these names, so a round means the same thing everywhere:

round k (k >= 1, previous round j) = score the pool with round j's model -> select ->
request -> annotate -> merge into round k's labelled set -> train round k's model on it
(from round j's weights when ``al.finetune``) -> evaluate -> publish the learning curve.
Round 0 (the seed round) selects ``al.initial_images`` random whole images instead of
scoring, then runs the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from alseg_core import storage

#: The DVC pipeline's base folder; ``alseg run`` uses ``al.out`` with the same layout.
DVC_BASE = "data/rounds"
#: Where the flow puts masks that people delivered for round k (committed with it).
INBOX = "deliveries"

SEED_STEPS: tuple[str, ...] = (
    "select",
    "request",
    "annotate",
    "merge",
    "train",
    "evaluate",
    "publish",
)
ROUND_STEPS: tuple[str, ...] = ("score", *SEED_STEPS)
#: Steps that come before labels arrive (the flow suspends after these for people).
BEFORE_LABELS: tuple[str, ...] = ("score", "select", "request")
SUPERPIXELS_STAGE = "superpixels"

RoundKey = int | str  # a round number, or a name such as "r3" or a dvc.yaml "${key}"


def round_name(k: RoundKey) -> str:
    return k if isinstance(k, str) else f"r{k}"


def stage_name(step: str, k: int) -> str:
    """The DVC stage that runs ``step`` for round ``k`` (``seed_<step>`` for round 0)."""
    steps = SEED_STEPS if k == 0 else ROUND_STEPS
    if step not in steps:
        raise ValueError(f"round {k} has no step {step!r} (steps: {steps})")
    return f"seed_{step}" if k == 0 else f"{step}@{round_name(k)}"


@dataclass(frozen=True)
class RoundLayout:
    """The files of every round under ``base`` (a path or ``s3://`` URL)."""

    base: str = DVC_BASE
    inbox_base: str = INBOX  # people's masks: <inbox_base>/r<k>/<image_id>.png

    @property
    def pool(self) -> str:
        """The pool manifest: image listing and superpixel settings, written once."""
        return storage.join(self.base, "pool.json")

    def round_dir(self, k: RoundKey) -> str:
        return storage.join(self.base, round_name(k))

    def scores(self, k: RoundKey) -> str:
        return storage.join(self.round_dir(k), "scores.parquet")

    def selection(self, k: RoundKey) -> str:
        return storage.join(self.round_dir(k), "selection.json")

    def request(self, k: RoundKey) -> str:
        return storage.join(self.round_dir(k), "request")

    def delivery(self, k: RoundKey) -> str:
        return storage.join(self.round_dir(k), "delivery")

    def labelled(self, k: RoundKey) -> str:
        return storage.join(self.round_dir(k), "labelled")

    def model(self, k: RoundKey) -> str:
        return storage.join(self.round_dir(k), "model.pt")

    def metrics(self, k: RoundKey) -> str:
        return storage.join(self.round_dir(k), "metrics.json")

    def publish(self, k: RoundKey) -> str:
        return storage.join(self.round_dir(k), "publish")

    def curve(self, k: RoundKey) -> str:
        return storage.join(self.publish(k), "curve.csv")

    def summary(self, k: RoundKey) -> str:
        return storage.join(self.publish(k), "metrics.json")

    def plot(self, k: RoundKey) -> str:
        return storage.join(self.publish(k), "learning_curve.png")

    # The latest published round, for people and DVC's top-level metrics and plots (files
    # that exist once the seed round is published, whatever rounds are still to run).
    @property
    def headline(self) -> str:
        """mIoU, labelled cost and % of full of the last published round (small)."""
        return storage.join(self.base, "metrics.json")

    @property
    def per_class(self) -> str:
        """Per-class IoU of the last published round."""
        return storage.join(self.base, "per_class_iou.json")

    @property
    def latest_plot(self) -> str:
        """The learning curve up to the last published round."""
        return storage.join(self.base, "learning_curve.png")

    def inbox(self, k: RoundKey) -> str:
        """Where people's masks for round ``k`` are put (the flow copies them here)."""
        return storage.join(self.inbox_base, round_name(k))
