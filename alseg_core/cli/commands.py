"""What each ``alseg`` subcommand does: read its options, call one pipeline function, say
what it wrote. No step logic lives here."""

from __future__ import annotations

import argparse
import os
import sys
import time

from alseg_core.config import Config, load_config

PREFIX = "params__"
#: params key -> the command-line option that overrides it (filled by the parser).
FLAGS: dict[str, str] = {}


def config(args: argparse.Namespace) -> Config:
    """params.yaml with the command line's overrides. A bad value in the file is reported
    as the file and key; a bad value given on the command line as the option."""
    params = args.params
    if params is None and os.path.exists("params.yaml"):
        params = "params.yaml"
    overrides = {
        dest[len(PREFIX) :].replace("__", "."): value
        for dest, value in vars(args).items()
        if dest.startswith(PREFIX) and value is not None
    }
    if not overrides:
        return load_config(params)
    load_config(params)  # the file alone: its errors name the file
    try:
        return load_config(params, overrides)
    except ValueError as err:
        text = str(err)
        prefix = f"{params or 'defaults'}: "
        text = text[len(prefix) :] if text.startswith(prefix) else text
        named = [k for k in overrides if k in text] or list(overrides)
        given = ", ".join(f"{FLAGS.get(k, k)} {overrides[k]!r}" for k in named)
        raise ValueError(f"command line {given}: {text}") from err


def _pool(args: argparse.Namespace, cfg: Config, *, val: bool = False):
    """The pool from ``--pool`` (a manifest) or listed once now."""
    from alseg_core.pipeline.pool import Pool

    d = cfg.data
    manifest = getattr(args, "pool", None) or None
    return Pool.open(d.root, d.pool_split, d.val_split, manifest=manifest, list_val=val)


def _store(cfg: Config):
    return cfg.superpixels.open_store()


def _samples(cfg: Config, split: str):
    from alseg_core.datasets import cityscapes

    return cityscapes.list_samples(cfg.data.root, split)


def cmd_make_synthetic(args: argparse.Namespace) -> None:
    from alseg_core.datasets.synthetic import make_synthetic

    cfg = config(args)
    start = time.perf_counter()
    summary = make_synthetic(
        cfg.data.root, cfg.synthetic, workers=args.workers or os.cpu_count() or 1,
        force=args.force,
    )  # fmt: skip
    if summary["skipped"]:
        print(
            f"synthetic dataset already at {summary['root']} ({summary['train']} train + "
            f"{summary['val']} val, same settings): nothing to do (--force rewrites it)"
        )
        return
    print(
        f"wrote synthetic Cityscapes-format dataset to {summary['root']}: "
        f"{summary['train']} train + {summary['val']} val images "
        f"({cfg.synthetic.width}x{cfg.synthetic.height}) in {time.perf_counter() - start:.1f}s"
    )


def cmd_superpixels(args: argparse.Namespace) -> None:
    from alseg_core.datasets import cityscapes
    from alseg_core.pipeline.steps.superpixels import superpixels_step

    cfg = config(args)
    start = time.perf_counter()
    split = args.split or cfg.data.pool_split
    samples = cityscapes.list_samples(cfg.data.root, split, require_labels=False)
    store = _store(cfg)
    added, total = superpixels_step(
        samples, store, workers=cfg.superpixels.workers, progress=not args.no_progress,
        executor=cfg.compute.executor, shard_size=cfg.compute.shard_size,
    )  # fmt: skip
    print(
        f"superpixels: {added} images computed (new or changed), {total - added} already stored "
        f"({cfg.superpixels.method}, {cfg.superpixels.n_regions} regions) in "
        f"{time.perf_counter() - start:.1f}s -> {cfg.superpixels.store}"
    )


def cmd_train(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.steps.train import Plateau, train_on_split, train_step

    cfg = config(args)
    if args.labelled:
        from alseg_core.active.strategies import get_strategy

        result = train_step(
            _pool(args, cfg), args.labelled, args.out, previous_model=args.init_from,
            finetune=args.init_from is not None, model=cfg.model, train=cfg.train,
            train_steps=cfg.al.train_steps, min_epochs=cfg.al.train_epochs,
            loss_prediction=get_strategy(cfg.al.strategy).loss_prediction,
            progress=not args.no_progress,
            plateau=Plateau.of(cfg.al),
            eval_batch_size=cfg.eval.batch_size,
        )  # fmt: skip
        what = args.labelled
    else:
        samples = _samples(cfg, args.split or cfg.data.pool_split)
        samples = samples[: args.limit] if args.limit else samples
        result = train_on_split(
            samples, args.out, model=cfg.model, train=cfg.train, init_from=args.init_from,
            resume=not args.no_resume, progress=not args.no_progress,
        )  # fmt: skip
        what = f"{len(samples)} images"
    resumed = (
        f", resumed after epoch {result.resumed_from_epoch}" if result.resumed_from_epoch else ""
    )
    print(
        f"trained {cfg.model.name} on {what}: {result.epochs_run} epochs "
        f"in {result.seconds:.1f}s{resumed}, final loss {result.final_loss:.4f} -> {args.out}"
    )


def cmd_predict(args: argparse.Namespace) -> None:
    from alseg_core.datasets import cityscapes
    from alseg_core.pipeline.steps.predict import predict_step

    cfg = config(args)
    split = args.split or cfg.data.val_split
    samples = cityscapes.list_samples(cfg.data.root, split, require_labels=False)
    n = predict_step(
        args.checkpoint, samples, args.out, model_name=cfg.model.name,
        num_classes=cfg.model.num_classes, batch_size=cfg.eval.batch_size,
        device=cfg.train.device, progress=not args.no_progress,
        executor=cfg.compute.executor, shard_size=cfg.compute.shard_size,
        threads=cfg.compute.threads,
    )  # fmt: skip
    print(f"wrote {n} label-id predictions to {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from alseg_core.evaluation import report_text
    from alseg_core.pipeline.steps.evaluate import evaluate_step

    cfg = config(args)
    if bool(args.checkpoint) == bool(args.predictions):
        raise ValueError("evaluate: give exactly one of --checkpoint or --predictions")
    report = evaluate_step(
        args.checkpoint, _samples(cfg, args.split or cfg.data.val_split), out=args.json,
        predictions=args.predictions, model_name=cfg.model.name,
        num_classes=cfg.model.num_classes, batch_size=cfg.eval.batch_size,
        device=cfg.train.device, progress=not args.no_progress,
    )  # fmt: skip
    print(report_text(report))
    if args.json:
        print(f"wrote {args.json}")


def cmd_score(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.steps.score import score_step

    cfg = config(args)
    n = score_step(
        args.checkpoint, _pool(args, cfg), _store(cfg), args.labelled, args.out,
        strategy=cfg.al.strategy, mc_passes=cfg.al.mc_passes, heat_stride=cfg.al.heat_stride,
        seed=cfg.al.seed, batch_size=cfg.eval.batch_size, device=cfg.train.device,
        model_name=cfg.model.name, num_classes=cfg.model.num_classes,
        progress=not args.no_progress, resolution=cfg.al.score_resolution,
        max_batch_pixels=cfg.al.score_batch_pixels, executor=cfg.compute.executor,
        shard_size=cfg.compute.shard_size, threads=cfg.compute.threads,
    )  # fmt: skip
    print(f"scored {n} pool images (D={cfg.al.mc_passes}) -> {args.out}")


def cmd_select(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.steps.select import describe_selection, select_step

    cfg = config(args)
    al = cfg.al
    summary = select_step(
        args.round, pool_ids=_pool(args, cfg).ids, scores=args.scores, labelled=args.labelled,
        out=args.out, unit=al.unit, strategy=al.strategy, budget=al.budget_per_round,
        initial_images=al.initial_images, seed=al.seed,
    )  # fmt: skip
    if summary.get("warning"):
        print(f"warning: {summary['warning']}", file=sys.stderr)
    print(describe_selection(summary, args.out))


def cmd_request(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.steps.request import request_step

    cfg = config(args)
    human = cfg.al.annotator == "human"
    request_id = request_step(
        args.selection, args.scores, _store(cfg), args.out,
        pool=_pool(args, cfg),
        export_formats=cfg.al.export_formats if human else (),
        url_prefix=cfg.al.image_url_prefix,
    )  # fmt: skip
    tools = f", {', '.join(cfg.al.export_formats)}" if human else ""
    print(
        f"request {request_id} -> {args.out} (request.csv, preannotations/, guides/, "
        f"heatmaps/{tools})"
    )


def cmd_export(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.steps.interchange import export_step

    cfg = config(args)
    files = export_step(
        args.request, args.out, args.format, pool=_pool(args, cfg), store=_store(cfg),
        url_prefix=args.image_url_prefix or cfg.al.image_url_prefix,
        checkpoint=args.predictions_from, model_name=cfg.model.name,
        num_classes=cfg.model.num_classes, batch_size=cfg.eval.batch_size,
        device=cfg.train.device,
    )  # fmt: skip
    for url in files:
        print(f"wrote {url}")


def cmd_import(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.steps.interchange import import_step

    cfg = config(args)
    n, cost, warnings = import_step(
        args.format, args.source, args.request, args.out, pool=_pool(args, cfg),
        store=_store(cfg), labelled=args.labelled,
    )  # fmt: skip
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"imported {args.format} labels of {n} images from {args.source} -> {args.out} "
        f"(will be charged {cost}); next: alseg annotate --annotator human --inbox {args.out}"
    )


def cmd_annotate(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.steps.annotate import annotate_step

    cfg = config(args)
    cost = annotate_step(
        args.request, args.labelled, args.out, pool=_pool(args, cfg), store=_store(cfg),
        annotator=cfg.al.annotator, inbox=args.inbox, label_format=cfg.al.label_format,
    )  # fmt: skip
    print(f"{cfg.al.annotator} labels for {args.request}: cost {cost} -> {args.out}")


def cmd_merge(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.steps.merge import merge_step

    cfg = config(args)
    charged, warnings = merge_step(
        args.labelled, args.request, args.delivery, args.out, pool=_pool(args, cfg),
        store=_store(cfg), label_format=cfg.al.label_format,
    )  # fmt: skip
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"merged {args.delivery}: charged {charged} -> {args.out}")


def cmd_step(args: argparse.Namespace) -> None:
    """One step of one pipeline round, with the paths of the round layout (DVC stages)."""
    from alseg_core.pipeline.engine import RoundEngine
    from alseg_core.pipeline.layout import RoundLayout

    cfg = config(args)
    engine = RoundEngine(
        cfg, RoundLayout(args.base), progress=not args.no_progress,
        log=lambda m: print(m, file=sys.stderr),
    )  # fmt: skip
    if args.step == "superpixels":
        print(engine.superpixels())
        return
    if args.round is None:
        raise ValueError(f"step {args.step}: --round r<k> is required")
    prev = cfg.previous_round(args.round)
    print(engine.run_step(args.step, args.round, prev))


def cmd_round_add(args: argparse.Namespace) -> None:
    from alseg_core.config import add_round

    path = args.params or "params.yaml"
    new = add_round(path)
    print(f"added round {new.k} (after round {new.prev}) to {path}")


def cmd_params_fill(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.upgrade import fill_params

    path = args.params or "params.yaml"
    added = fill_params(path)
    for key, value in added.items():
        print(f"added {key}: {value!r} (its default) to {path}")
    if not added:
        print(f"{path} has every key dvc.yaml's stages read")


def cmd_bench(args: argparse.Namespace) -> None:
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "label_efficiency.py"
    if not script.exists():
        raise FileNotFoundError(f"{script}: the benchmarks ship with the source checkout")
    sys.argv = [str(script), *args.args]
    runpy.run_path(str(script), run_name="__main__")


def cmd_run(args: argparse.Namespace) -> None:
    from alseg_core.pipeline.run import run_rounds, run_with_baseline

    cfg = config(args)

    def log(message: str) -> None:
        print(message, flush=True)

    if args.baseline:
        run_with_baseline(cfg, args.baseline, log=log, progress=not args.no_progress)
    else:
        run_rounds(cfg, log=log, progress=not args.no_progress)
