"""The ``alseg`` command line: one subcommand per pipeline step.

Options default to the values in params.yaml (``--params``, default ./params.yaml when
it exists); an option given on the command line overrides its params key.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from alseg_core.config import Config, load_config

_PREFIX = "params__"


def _opt(parser: argparse.ArgumentParser, flag: str, key: str, **kwargs: Any) -> None:
    """An option that overrides params key ``key`` (its dest encodes the key)."""
    kwargs.setdefault("help", f"overrides params key {key}")
    parser.add_argument(flag, dest=_PREFIX + key.replace(".", "__"), default=None, **kwargs)


def _round_arg(text: str) -> int:
    value = text[1:] if text.startswith("r") else text
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"round must be r<k> or <k>, got {text!r}")
    return int(value)


def _config(args: argparse.Namespace) -> Config:
    params = args.params
    if params is None and os.path.exists("params.yaml"):
        params = "params.yaml"
    overrides = {
        dest[len(_PREFIX) :].replace("__", "."): value
        for dest, value in vars(args).items()
        if dest.startswith(_PREFIX) and value is not None
    }
    return load_config(params, overrides)


# ----------------------------------------------------------------------------- steps


def cmd_make_synthetic(args: argparse.Namespace) -> None:
    from alseg_core.datasets.synthetic import make_synthetic

    cfg = _config(args)
    start = time.perf_counter()
    summary = make_synthetic(
        cfg.data.root, cfg.synthetic, workers=args.workers or os.cpu_count() or 1
    )
    print(
        f"wrote synthetic Cityscapes-format dataset to {summary['root']}: "
        f"{summary['train']} train + {summary['val']} val images "
        f"({cfg.synthetic.width}x{cfg.synthetic.height}) in {time.perf_counter() - start:.1f}s"
    )


def cmd_superpixels(args: argparse.Namespace) -> None:
    from alseg_core.steps import step_superpixels

    cfg = _config(args)
    start = time.perf_counter()
    added, total = step_superpixels(cfg, split=args.split, progress=not args.no_progress)
    if args.manifest:
        from alseg_core import storage

        storage.write_json(
            args.manifest,
            {"store": cfg.superpixels.store, "images": total, **cfg.superpixels.params().__dict__},
        )
    print(
        f"superpixels: {added} new images computed, {total - added} already stored "
        f"({cfg.superpixels.method}, {cfg.superpixels.n_regions} regions) in "
        f"{time.perf_counter() - start:.1f}s -> {cfg.superpixels.store}"
    )


def cmd_train(args: argparse.Namespace) -> None:
    from alseg_core.datasets import cityscapes
    from alseg_core.training import items_from_samples, train

    cfg = _config(args)
    if args.labelled:
        from alseg_core.steps import labelled_items, step_train

        n_images = len(labelled_items(cfg, args.labelled))
        result = step_train(
            cfg, args.labelled, args.out, init_from=args.init_from, progress=not args.no_progress
        )
    else:
        split = args.split or cfg.data.pool_split
        samples = cityscapes.list_samples(cfg.data.root, split)
        if args.limit:
            samples = samples[: args.limit]
        n_images = len(samples)
        result = train(
            items_from_samples(samples),
            model_name=cfg.model.name,
            checkpoint_url=args.out,
            cfg=cfg.train,
            num_classes=cfg.model.num_classes,
            dropout=cfg.model.dropout,
            init_from=args.init_from,
            resume=not args.no_resume,
            progress=not args.no_progress,
        )
    resumed = (
        f", resumed after epoch {result.resumed_from_epoch}" if result.resumed_from_epoch else ""
    )
    print(
        f"trained {cfg.model.name} on {n_images} images: {result.epochs_run} epochs "
        f"in {result.seconds:.1f}s{resumed}, final loss {result.final_loss:.4f} -> {args.out}"
    )


def cmd_predict(args: argparse.Namespace) -> None:
    from alseg_core import storage
    from alseg_core.datasets import cityscapes
    from alseg_core.datasets.labels import train_ids_to_label_ids
    from alseg_core.evaluation import prediction_url
    from alseg_core.inference import predict
    from alseg_core.training import load_model

    cfg = _config(args)
    split = args.split or cfg.data.val_split
    samples = cityscapes.list_samples(cfg.data.root, split, require_labels=False)
    model = load_model(
        args.checkpoint, model_name=cfg.model.name, num_classes=cfg.model.num_classes
    )
    n = 0
    for sample, pred in predict(
        model,
        samples,
        batch_size=cfg.eval.batch_size,
        device=cfg.train.device,
        progress=not args.no_progress,
    ):
        storage.write_png(prediction_url(args.out, sample.image_id), train_ids_to_label_ids(pred))
        n += 1
    print(f"wrote {n} label-id predictions to {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from alseg_core import storage
    from alseg_core.datasets import cityscapes
    from alseg_core.evaluation import (
        evaluate_model,
        evaluate_predictions,
        scores_json,
        scores_report,
    )
    from alseg_core.training import load_model

    cfg = _config(args)
    if bool(args.checkpoint) == bool(args.predictions):
        raise ValueError("evaluate: give exactly one of --checkpoint or --predictions")
    split = args.split or cfg.data.val_split
    samples = cityscapes.list_samples(cfg.data.root, split)
    if args.checkpoint:
        model = load_model(
            args.checkpoint, model_name=cfg.model.name, num_classes=cfg.model.num_classes
        )
        scores = evaluate_model(
            model,
            samples,
            batch_size=cfg.eval.batch_size,
            device=cfg.train.device,
            progress=not args.no_progress,
        )
    else:
        scores = evaluate_predictions(args.predictions, samples)
    print(scores_report(scores))
    if args.json:
        report = scores_json(scores)
        report["source"] = args.checkpoint or args.predictions
        report["split"] = split
        report["n_images"] = len(samples)
        if args.labelled:
            from alseg_core.labels import load_state

            state = load_state(args.labelled)
            report["labelled_cost"] = state.total_cost
            report["labelled_images"] = len(state.images)
        storage.write_json(args.json, report)
        print(f"wrote {args.json}")


def cmd_score(args: argparse.Namespace) -> None:
    from alseg_core.steps import step_score

    cfg = _config(args)
    n = step_score(cfg, args.checkpoint, args.labelled, args.out, progress=not args.no_progress)
    print(f"scored {n} pool images (D={cfg.al.mc_passes}) -> {args.out}")


def cmd_select(args: argparse.Namespace) -> None:
    from alseg_core.steps import step_select

    cfg = _config(args)
    summary = step_select(cfg, args.round, args.scores, args.labelled, args.out)
    if summary.get("warning"):
        print(f"warning: {summary['warning']}", file=sys.stderr)
    n_regions = sum(len(i["regions"]) for i in summary["items"])
    print(
        f"round {args.round}: selected {len(summary['items'])} images / {n_regions} regions "
        f"({summary['unit']}, {summary['strategy']}), estimated cost "
        f"{summary['estimated_spent']} of budget {summary['budget']} -> {args.out}"
    )


def cmd_request(args: argparse.Namespace) -> None:
    from alseg_core.steps import step_request

    cfg = _config(args)
    request_id = step_request(cfg, args.selection, args.scores, args.out)
    print(f"request {request_id} -> {args.out} (request.csv, preannotations/, heatmaps/)")


def cmd_annotate(args: argparse.Namespace) -> None:
    from alseg_core.steps import step_annotate

    cfg = _config(args)
    cost = step_annotate(cfg, args.request, args.labelled, args.out, inbox=args.inbox)
    print(f"{cfg.al.annotator} labels for {args.request}: cost {cost} -> {args.out}")


def cmd_merge(args: argparse.Namespace) -> None:
    from alseg_core.steps import step_merge

    cfg = _config(args)
    charged, warnings = step_merge(
        cfg, args.labelled, args.request, args.delivery, args.out, label_format=args.label_format
    )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"merged {args.delivery}: charged {charged} -> {args.out}")


def cmd_round_add(args: argparse.Namespace) -> None:
    from alseg_core.config import add_round

    path = args.params or "params.yaml"
    new = add_round(path)
    print(f"added round {new.k} (after round {new.prev}) to {path}")


def cmd_publish(args: argparse.Namespace) -> None:
    from alseg_core.loop import publish_round

    cfg = _config(args)
    rows = publish_round(cfg, args.round, args.metrics, args.labelled, args.previous, args.out)
    print(f"round {args.round}: learning curve with {len(rows)} points -> {args.out}")


def cmd_bench(args: argparse.Namespace) -> None:
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "label_efficiency.py"
    if not script.exists():
        raise FileNotFoundError(f"{script}: the benchmarks ship with the source checkout")
    sys.argv = [str(script), *args.args]
    runpy.run_path(str(script), run_name="__main__")


def cmd_run(args: argparse.Namespace) -> None:
    from alseg_core.loop import run_loop

    cfg = _config(args)
    run_loop(cfg, log=lambda m: print(m, flush=True), progress=not args.no_progress)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alseg", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", default=None, help="params.yaml (default: ./params.yaml if present)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], None], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        return p

    p = add(
        "make-synthetic",
        cmd_make_synthetic,
        "write the embedded synthetic Cityscapes-format dataset",
    )
    _opt(p, "--root", "data.root", help="dataset root to write (path or s3:// URL)")
    _opt(p, "--n-train", "synthetic.n_train", type=int)
    _opt(p, "--n-val", "synthetic.n_val", type=int)
    _opt(p, "--height", "synthetic.height", type=int)
    _opt(p, "--width", "synthetic.width", type=int)
    _opt(p, "--seed", "synthetic.seed", type=int)
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")

    p = add(
        "superpixels",
        cmd_superpixels,
        "compute superpixels of every pool image into the Parquet store",
    )
    _opt(p, "--root", "data.root")
    p.add_argument("--split", default=None, help="split to process (default: data.pool_split)")
    _opt(p, "--store", "superpixels.store", help="Parquet store directory (path or s3:// URL)")
    p.add_argument("--manifest", default=None, help="also write a JSON summary here (DVC out)")
    _opt(p, "--method", "superpixels.method", choices=["watershed", "slic"])
    _opt(p, "--n-regions", "superpixels.n_regions", type=int)
    _opt(p, "--compactness", "superpixels.compactness", type=float)
    _opt(p, "--workers", "superpixels.workers", type=int, help="processes, 0 = all cores")

    p = add("train", cmd_train, "train a segmentation model on the labelled images of a split")
    _opt(p, "--root", "data.root")
    p.add_argument("--split", default=None, help="split to train on (default: data.pool_split)")
    p.add_argument("--out", required=True, help="checkpoint to write (resumed if unfinished)")
    p.add_argument("--init-from", default=None, help="checkpoint whose weights start training")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out exists")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images")
    p.add_argument(
        "--labelled",
        default=None,
        help="train on this labelled set (partial labels, al.train_steps steps) instead of a split",
    )
    _opt(p, "--model", "model.name")
    _opt(p, "--dropout", "model.dropout", type=float)
    _opt(p, "--epochs", "train.epochs", type=int)
    _opt(p, "--batch-size", "train.batch_size", type=int)
    _opt(p, "--lr", "train.lr", type=float)
    _opt(p, "--seed", "train.seed", type=int)
    _opt(p, "--device", "train.device")

    p = add(
        "predict", cmd_predict, "write Cityscapes-format label-id predictions (one PNG per image)"
    )
    _opt(p, "--root", "data.root")
    p.add_argument("--split", default=None, help="split to predict (default: data.val_split)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for <image_id>.png label-id maps")
    _opt(p, "--device", "train.device")

    p = add(
        "evaluate", cmd_evaluate, "per-class IoU and mIoU of a checkpoint or a predictions folder"
    )
    _opt(p, "--root", "data.root")
    p.add_argument("--split", default=None, help="split to score (default: data.val_split)")
    p.add_argument("--checkpoint", default=None, help="checkpoint to evaluate (dropout off)")
    p.add_argument("--predictions", default=None, help="folder of label-id PNGs from any model")
    p.add_argument("--json", default=None, help="also write the scores as JSON here")
    p.add_argument("--labelled", default=None, help="labelled set the model was trained on")
    _opt(p, "--device", "train.device")

    def al_options(p: argparse.ArgumentParser) -> None:
        _opt(p, "--root", "data.root")
        _opt(p, "--store", "superpixels.store")
        _opt(p, "--unit", "al.unit", choices=["image", "superpixel"])
        _opt(p, "--strategy", "al.strategy")
        _opt(p, "--seed", "al.seed", type=int)

    p = add("score", cmd_score, "MC-dropout scores of every unlabelled pool image (Parquet)")
    al_options(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--labelled", default=None, help="labelled set folder (None: nothing labelled)")
    p.add_argument("--out", required=True, help="scores Parquet file to write")
    _opt(p, "--mc-passes", "al.mc_passes", type=int)
    _opt(p, "--device", "train.device")

    p = add("select", cmd_select, "choose the round's images or superpixels under the cost budget")
    al_options(p)
    p.add_argument("--round", type=_round_arg, required=True, help="r<k> or k; 0 = the seed set")
    p.add_argument("--scores", default=None, help="scores Parquet (rounds >= 1)")
    p.add_argument("--labelled", default=None)
    p.add_argument("--out", required=True, help="selection JSON to write")
    _opt(p, "--budget", "al.budget_per_round", type=int)

    p = add("request", cmd_request, "write the label request: CSV, pre-annotation masks, heatmaps")
    al_options(p)
    p.add_argument("--selection", required=True)
    p.add_argument("--scores", default=None, help="scores Parquet, for the heatmaps")
    p.add_argument("--out", required=True, help="request folder to write")

    p = add("annotate", cmd_annotate, "simulated oracle: answer a request from ground truth")
    al_options(p)
    p.add_argument("--request", required=True, help="request folder")
    p.add_argument("--labelled", default=None, help="labelled set before this round")
    p.add_argument("--out", required=True, help="delivery folder to write")
    p.add_argument("--inbox", default=None, help="folder of delivered masks (al.annotator human)")
    _opt(p, "--annotator", "al.annotator", choices=["oracle", "human"])

    p = add("merge", cmd_merge, "validate a delivery against its request and merge it")
    al_options(p)
    p.add_argument("--labelled", default=None, help="labelled set before this round")
    p.add_argument("--request", required=True)
    p.add_argument("--delivery", required=True, help="oracle delivery, or a folder of PNG masks")
    p.add_argument("--label-format", default="train_ids", choices=["train_ids", "label_ids"])
    p.add_argument("--out", required=True, help="labelled set folder to write")

    p = add("round", cmd_round_add, "extend params.yaml's rounds list by one round")
    p.add_argument("action", choices=["add"])

    p = add("publish", cmd_publish, "append a round to the learning-curve table and plot")
    p.add_argument("--round", type=_round_arg, required=True, help="r<k> or k")
    p.add_argument("--metrics", default=None, help="the round's metrics JSON (from evaluate)")
    p.add_argument("--labelled", default=None, help="labelled set the model was trained on")
    p.add_argument("--previous", default=None, help="previous round's publish folder")
    p.add_argument("--out", required=True, help="folder for curve.csv and learning_curve.png")

    p = add(
        "bench",
        cmd_bench,
        "label-efficiency benchmark (bench/label_efficiency.py; e.g. --preset quick)",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")

    p = add("run", cmd_run, "the whole active-learning loop: rounds of train/score/select/label")
    al_options(p)
    _opt(p, "--rounds", "al.rounds", type=int)
    _opt(p, "--budget", "al.budget_per_round", type=int)
    _opt(p, "--initial-images", "al.initial_images", type=int)
    _opt(p, "--train-steps", "al.train_steps", type=int)
    _opt(p, "--mc-passes", "al.mc_passes", type=int)
    _opt(p, "--out", "al.out", help="run folder (rounds, metrics.csv, learning_curve.png)")
    _opt(p, "--model", "model.name")
    return parser


def _workspace(args: argparse.Namespace) -> str:
    """The folder of the params file (default: the current folder)."""
    return os.path.dirname(os.path.abspath(args.params)) if args.params else os.getcwd()


def _local_outputs(args: argparse.Namespace) -> list[str]:
    """Local paths this command writes (their stale temporaries are cleaned first)."""
    from alseg_core.storage import is_remote

    outs = [getattr(args, k, None) for k in ("out", "json", "manifest")]
    if args.command in ("run", "superpixels", "make-synthetic", "round"):
        try:
            cfg = _config(args)
        except (ValueError, FileNotFoundError):
            cfg = None  # the command itself reports the bad config
        if cfg is not None and args.command in ("run", "superpixels"):
            outs += [cfg.superpixels.store] + ([cfg.al.out] if args.command == "run" else [])
        if cfg is not None and args.command == "make-synthetic":
            outs.append(cfg.data.root)
        if args.command == "round":
            outs.append(args.params or "params.yaml")
    return [o for o in outs if isinstance(o, str) and o and not is_remote(o)]


def main(argv: Sequence[str] | None = None) -> int:
    from alseg_core import storage
    from alseg_core.workspace import WorkspaceBusy, remove_stale_temporaries, workspace_lock

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "bench":
        args.args = [*extra, *args.args]
    fault = os.environ.get("ALSEG_TEST_KILL_AT_WRITE", "")
    if fault.startswith(f"{args.command}:"):  # crash tests only: "<command>:<n>"
        storage.kill_at_write = int(fault.split(":", 1)[1])
    if args.command == "bench":  # writes only under its own --work folder
        args.func(args)
        return 0
    try:
        with workspace_lock(_workspace(args), args.command):
            remove_stale_temporaries(_local_outputs(args))
            args.func(args)
    except WorkspaceBusy as err:
        print(f"alseg {args.command}: error: {err}", file=sys.stderr)
        return 3
    except storage.StorageUnavailable as err:
        print(
            f"alseg {args.command}: error: {err}. Nothing was changed; run the step again "
            "when storage is reachable.",
            file=sys.stderr,
        )
        return 4
    except (ValueError, FileNotFoundError, KeyError, PermissionError) as err:
        print(f"alseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
