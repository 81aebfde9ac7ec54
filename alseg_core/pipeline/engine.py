"""The round engine: which step of which round reads and writes what, defined once.

``RoundEngine.run_step(step, k, prev)`` runs one step of round ``k`` (after round
``prev``) with the paths of a :class:`RoundLayout`. ``alseg step`` (what every DVC stage
runs) and ``alseg run`` (the plain driver) both go through it, and ``dvc.yaml`` is
generated from the same tables (:mod:`alseg_core.pipeline.dvcfile`), so a round means
the same thing on every path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from alseg_core import storage
from alseg_core.config import Config
from alseg_core.labels import state_url
from alseg_core.pipeline.layout import ROUND_STEPS, SEED_STEPS, RoundLayout
from alseg_core.pipeline.pool import Pool
from alseg_core.superpixels import SuperpixelStore

Log = Callable[[str], None]

_M = "alseg_core/models/"
MODEL_CODE = (f"{_M}base.py", f"{_M}drn.py", f"{_M}tv.py", f"{_M}learning_loss.py",
              f"{_M}registry.py", "alseg_core/training.py")  # fmt: skip

#: The library files each step runs (its DVC stage depends on them), besides shared
#: plumbing (storage, config, CLI), whose changes do not change results.
#: The tool formats a human round's request step writes.
FORMATS_CODE = tuple(
    f"alseg_core/annotation/formats/{m}.py"
    for m in ("common", "brush_rle", "polygons", "label_studio", "cvat", "coco", "dispatch")
) + ("alseg_core/pipeline/steps/interchange.py",)

STEP_CODE: dict[str, tuple[str, ...]] = {
    "superpixels": ("alseg_core/superpixels.py", "alseg_core/pipeline/pool.py",
                    "alseg_core/datasets/cityscapes.py"),
    "score": ("alseg_core/active/scoring.py", "alseg_core/active/scorers.py",
              "alseg_core/active/regions.py", "alseg_core/active/costs.py",
              "alseg_core/active/strategies.py", "alseg_core/active/balance.py",
              "alseg_core/inference.py", *MODEL_CODE),
    "select": ("alseg_core/active/selection.py", "alseg_core/active/strategies.py",
               "alseg_core/active/costs.py", "alseg_core/active/scoring.py"),
    "request": ("alseg_core/annotation/requests.py", "alseg_core/active/scoring.py",
                "alseg_core/annotation/overlays.py",
                *FORMATS_CODE),
    "annotate": ("alseg_core/annotation/oracle.py", "alseg_core/annotation/deliveries.py",
                 "alseg_core/active/costs.py", "alseg_core/annotation/formats/common.py"),
    "merge": ("alseg_core/annotation/deliveries.py", "alseg_core/annotation/merge.py",
              "alseg_core/labels.py"),
    "train": ("alseg_core/training_spec.py", "alseg_core/datasets/transforms.py",
              "alseg_core/evaluation.py", "alseg_core/metrics.py", "alseg_core/inference.py",
              *MODEL_CODE),
    "evaluate": ("alseg_core/evaluation.py", "alseg_core/metrics.py", "alseg_core/inference.py",
                 *MODEL_CODE),
    "publish": ("alseg_core/plots.py", "alseg_core/active/costs.py"),
}  # fmt: skip

#: params.yaml keys each step reads (its DVC stage's params).
STEP_PARAMS: dict[str, tuple[str, ...]] = {
    "superpixels": ("data.root", "data.pool_split", "data.val_split", "superpixels.method",
                    "superpixels.n_regions", "superpixels.compactness", "superpixels.store"),
    "score": ("al.strategy", "al.mc_passes", "al.heat_stride", "al.seed", "eval.batch_size",
              "model.name", "model.num_classes", "al.score_resolution", "al.score_batch_pixels"),
    "select": ("al.unit", "al.strategy", "al.budget_per_round", "al.initial_images", "al.seed"),
    "request": ("al.annotator", "al.export_formats", "al.image_url_prefix"),
    "annotate": ("al.annotator", "al.label_format"),
    "merge": ("al.label_format",),
    "train": ("model", "train", "al.train_steps", "al.train_epochs", "al.strategy",
              "al.finetune", "al.plateau_chunks", "al.plateau_tol", "al.plateau_patience",
              "al.pseudo_threshold", "al.pseudo_chunks", "eval.batch_size"),
    "evaluate": ("eval.batch_size", "model.name", "model.num_classes"),
    "publish": ("al.unit", "al.strategy", "model.name"),
}  # fmt: skip


def _arrows(values: tuple[float, ...]) -> str:
    return " -> ".join(f"{m:.4f}" for m in values)


def step_module(step: str) -> str:
    return f"alseg_core/pipeline/steps/{step}.py"


class RoundEngine:
    """Runs the steps of the rounds in ``layout`` for the experiment ``cfg``.

    The pool listing and the superpixel store are built once per engine (per process)
    and passed to every step; after the superpixels step the pool comes from the
    manifest it wrote.
    """

    def __init__(
        self, cfg: Config, layout: RoundLayout, *, progress: bool = False, log: Log | None = None
    ) -> None:
        self.cfg = cfg
        self.layout = layout
        self.progress = progress
        self.log = log or (lambda _m: None)

    @cached_property
    def pool(self) -> Pool:
        d, manifest = self.cfg.data, self.layout.pool
        manifest = manifest if storage.exists(manifest) else None
        return Pool.open(d.root, d.pool_split, d.val_split, manifest=manifest)

    @cached_property
    def store(self) -> SuperpixelStore:
        return self.cfg.superpixels.open_store()

    # ------------------------------------------------------------------------- outputs

    def outputs(self, step: str, k: int) -> str:
        """The file whose presence marks the step of round ``k`` done."""
        L = self.layout
        return {
            "superpixels": L.pool,
            "score": L.scores(k),
            "select": L.selection(k),
            "request": storage.join(L.request(k), "request.json"),
            "annotate": storage.join(L.delivery(k), "delivery.json"),
            "merge": state_url(L.labelled(k)),
            "train": L.model(k),
            "evaluate": L.metrics(k),
            "publish": L.summary(k),
        }[step]

    def is_done(self, step: str, k: int) -> bool:
        return storage.exists(self.outputs(step, k))

    # ------------------------------------------------------------------------- steps

    def superpixels(self) -> str:
        """Region maps for every pool image; writes the pool manifest."""
        from alseg_core.pipeline.steps.superpixels import superpixels_step, write_pool_manifest

        d = self.cfg.data
        pool = Pool.list(d.root, d.pool_split, d.val_split)
        added, total = superpixels_step(
            list(pool.samples.values()), self.store,
            workers=self.cfg.superpixels.workers, progress=self.progress,
            executor=self.cfg.compute.executor, shard_size=self.cfg.compute.shard_size,
        )  # fmt: skip
        write_pool_manifest(pool, self.store, self.layout.pool)
        self.__dict__.pop("pool", None)
        return (
            f"superpixels: {added} images computed (new or changed), {total - added} already "
            "stored "
            f"({self.store.params.method}, {self.store.params.n_regions} regions) -> "
            f"{self.store.url}; pool manifest {self.layout.pool}"
        )

    def run_step(self, step: str, k: int, prev: int | None) -> str:
        """Run ``step`` of round ``k`` (after round ``prev``; None for the seed round)."""
        allowed = SEED_STEPS if k == 0 else ROUND_STEPS
        if step not in allowed:
            raise ValueError(f"round {k} has no step {step!r} (steps: {', '.join(allowed)})")
        if (k == 0) != (prev is None):
            raise ValueError(f"round {k}: the seed round alone has no previous round")
        return getattr(self, f"_{step}")(k, prev)

    def _score(self, k: int, prev: int) -> str:
        from alseg_core.pipeline.steps.score import score_step

        cfg, L = self.cfg, self.layout
        n = score_step(
            L.model(prev), self.pool, self.store, L.labelled(prev), L.scores(k),
            strategy=cfg.al.strategy, mc_passes=cfg.al.mc_passes,
            heat_stride=cfg.al.heat_stride, seed=cfg.al.seed,
            batch_size=cfg.eval.batch_size, device=cfg.train.device,
            model_name=cfg.model.name, num_classes=cfg.model.num_classes,
            progress=self.progress, resolution=cfg.al.score_resolution,
            max_batch_pixels=cfg.al.score_batch_pixels, executor=cfg.compute.executor,
            shard_size=cfg.compute.shard_size, threads=cfg.compute.threads,
        )  # fmt: skip
        return f"round {k}: scored {n} pool images (D={cfg.al.mc_passes}) -> {L.scores(k)}"

    def _select(self, k: int, prev: int | None) -> str:
        from alseg_core.pipeline.steps.select import describe_selection, select_step

        al, L = self.cfg.al, self.layout
        summary = select_step(
            k, pool_ids=self.pool.ids, scores=L.scores(k) if k else None,
            labelled=None if prev is None else L.labelled(prev), out=L.selection(k),
            unit=al.unit, strategy=al.strategy, budget=al.budget_per_round,
            initial_images=al.initial_images, seed=al.seed,
            seed_regions=self._seed_regions() if k == 0 else None,
        )  # fmt: skip
        if summary.get("warning"):
            self.log(f"warning: {summary['warning']}")
        return describe_selection(summary, L.selection(k))

    def _seed_regions(self) -> tuple[dict[str, int], str, int] | None:
        """A superpixel seed round's (regions per pool image, store fingerprint, budget)."""
        al = self.cfg.al
        if al.seed_unit != "superpixel":
            return None
        counts = {i: int(self.store.read_row(i)["n_regions"]) for i in self.pool.ids}
        return counts, self.store.fingerprint(), al.seed_budget

    def _request(self, k: int, prev: int | None) -> str:
        from alseg_core.pipeline.steps.request import request_step

        L = self.layout
        human = k > 0 and self.cfg.al.annotator == "human"  # the seed is always the oracle's
        request_id = request_step(
            L.selection(k), L.scores(k) if k else None, self.store, L.request(k),
            pool=self.pool, export_formats=self.cfg.al.export_formats if human else (),
            url_prefix=self.cfg.al.image_url_prefix,
        )  # fmt: skip
        return f"round {k}: request {request_id} -> {L.request(k)}"

    def _annotate(self, k: int, prev: int | None) -> str:
        from alseg_core.pipeline.steps.annotate import annotate_step

        al, L = self.cfg.al, self.layout
        # The seed set is answered from ground truth in every mode: the flow asks people
        # for the labels of acquisition rounds.
        annotator = "oracle" if k == 0 else al.annotator
        cost = annotate_step(
            L.request(k), None if prev is None else L.labelled(prev), L.delivery(k),
            pool=self.pool, store=self.store, annotator=annotator, inbox=L.inbox(k),
            label_format=al.label_format,
        )  # fmt: skip
        return f"round {k}: {annotator} labels, cost {cost} -> {L.delivery(k)}"

    def _merge(self, k: int, prev: int | None) -> str:
        from alseg_core.pipeline.steps.merge import merge_step

        L = self.layout
        charged, warnings = merge_step(
            None if prev is None else L.labelled(prev), L.request(k), L.delivery(k),
            L.labelled(k), pool=self.pool, store=self.store,
            label_format=self.cfg.al.label_format,
        )  # fmt: skip
        for warning in warnings:
            self.log(f"warning: {warning}")
        return f"round {k}: merged, charged {charged} -> {L.labelled(k)}"

    def _train(self, k: int, prev: int | None) -> str:
        from alseg_core.active.strategies import get_strategy
        from alseg_core.pipeline.steps.train import Plateau, SelfTraining, train_step

        cfg, L = self.cfg, self.layout
        result = train_step(
            self.pool, L.labelled(k), L.model(k),
            previous_model=None if prev is None else L.model(prev),
            finetune=cfg.al.finetune, model=cfg.model, train=cfg.train,
            train_steps=cfg.al.train_steps, min_epochs=cfg.al.train_epochs,
            loss_prediction=get_strategy(cfg.al.strategy).loss_prediction,
            progress=self.progress, plateau=Plateau.of(cfg.al),
            eval_batch_size=cfg.eval.batch_size,
            self_training=SelfTraining(cfg.al.pseudo_threshold, cfg.al.pseudo_chunks),
        )  # fmt: skip
        start = (
            "from round " + str(prev) if prev is not None and cfg.al.finetune else "from scratch"
        )
        resumed = result.resumed_from_epoch
        resumed_text = f", resumed after epoch {resumed}" if resumed else ""
        n = len(result.val_curve) - result.self_training_chunks
        plain, pseudo = result.val_curve[:n], result.val_curve[n:]
        plateau = (
            f", val mIoU by chunk {_arrows(plain)}"
            + (f", then self-training {_arrows(pseudo)}" if pseudo else "")
            + " (kept the best)"
            if plain
            else ""
        )
        return (
            f"round {k}: trained {cfg.model.name} {start}, {result.epochs_run} epochs in "
            f"{result.seconds:.1f}s{resumed_text}, loss {result.final_loss:.4f}{plateau} "
            f"-> {L.model(k)}"
        )

    def _evaluate(self, k: int, prev: int | None) -> str:
        from alseg_core.pipeline.steps.evaluate import evaluate_step

        cfg, L = self.cfg, self.layout
        report = evaluate_step(
            L.model(k), self.pool.val, out=L.metrics(k), model_name=cfg.model.name,
            num_classes=cfg.model.num_classes, batch_size=cfg.eval.batch_size,
            device=cfg.train.device, progress=self.progress,
        )  # fmt: skip
        return f"round {k}: mIoU {report['mIoU']:.4f} on {report['n_images']} val images"

    def _publish(self, k: int, prev: int | None) -> str:
        from alseg_core.pipeline.steps.publish import publish_step

        cfg, L = self.cfg, self.layout
        rows = publish_step(
            k, metrics=L.metrics(k), labelled=L.labelled(k),
            previous=None if prev is None else L.publish(prev), out=L.publish(k),
            pool=self.pool, label=f"{cfg.al.unit} / {cfg.al.strategy}",
            title=f"alseg: {cfg.model.name}, rounds 0..{k}",
            latest=(L.headline, L.per_class, L.latest_plot),
        )  # fmt: skip
        return f"round {k}: learning curve with {len(rows)} points -> {L.publish(k)}"
