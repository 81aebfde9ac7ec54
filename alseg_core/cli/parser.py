"""The ``alseg`` argument parser: one subcommand per step, options default to params.yaml."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from alseg_core.cli import commands as c
from alseg_core.pipeline.layout import DVC_BASE, ROUND_STEPS

Command = Callable[[argparse.Namespace], None]


def _opt(parser: argparse.ArgumentParser, flag: str, key: str, **kwargs: Any) -> None:
    """An option that overrides params key ``key`` (its dest encodes the key)."""
    kwargs.setdefault("help", f"overrides params key {key}")
    if "choices" not in kwargs:
        kwargs.setdefault("metavar", key.rsplit(".", 1)[-1].upper())
    c.FLAGS[key] = flag
    parser.add_argument(flag, dest=c.PREFIX + key.replace(".", "__"), default=None, **kwargs)


def _strategies() -> list[str]:
    from alseg_core.active.strategies import STRATEGY_REGISTRY

    return sorted(STRATEGY_REGISTRY)


def _models() -> list[str]:
    from alseg_core.models.registry import MODEL_REGISTRY

    return sorted(MODEL_REGISTRY)


def _round_arg(text: str) -> int:
    value = text[1:] if text.startswith("r") else text
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"round must be r<k> or <k>, got {text!r}")
    return int(value)


def _data(p: argparse.ArgumentParser) -> None:
    _opt(p, "--root", "data.root", help="dataset root (path or s3:// URL)")


def _al(p: argparse.ArgumentParser, *, pool: bool = True) -> None:
    _data(p)
    _opt(p, "--store", "superpixels.store", help="superpixel store (path or s3:// URL)")
    _opt(p, "--unit", "al.unit", choices=["image", "superpixel"])
    _opt(p, "--strategy", "al.strategy", choices=_strategies())
    _opt(p, "--seed", "al.seed", type=int)
    if pool:
        p.add_argument("--pool", default=None, help="pool manifest (default: list the pool)")


def _make_synthetic(p: argparse.ArgumentParser) -> None:
    _opt(p, "--root", "data.root", help="dataset root to write (path or s3:// URL)")
    for flag, key in (("--n-train", "n_train"), ("--n-val", "n_val"), ("--height", "height"),
                      ("--width", "width"), ("--seed", "seed")):  # fmt: skip
        _opt(p, flag, f"synthetic.{key}", type=int)
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument("--force", action="store_true", help="rewrite even if already there")


def _superpixels(p: argparse.ArgumentParser) -> None:
    _data(p)
    p.add_argument("--split", default=None, help="split to process (default: data.pool_split)")
    _opt(p, "--store", "superpixels.store", help="Parquet store directory (path or s3:// URL)")
    _opt(p, "--method", "superpixels.method", choices=["watershed", "slic"])
    _opt(p, "--n-regions", "superpixels.n_regions", type=int)
    _opt(p, "--compactness", "superpixels.compactness", type=float)
    _opt(p, "--workers", "superpixels.workers", type=int, help="processes, 0 = all cores")


def _train(p: argparse.ArgumentParser) -> None:
    _data(p)
    p.add_argument("--split", default=None, help="split to train on (default: data.pool_split)")
    p.add_argument("--out", required=True, help="checkpoint to write (resumed if unfinished)")
    p.add_argument("--init-from", default=None, help="checkpoint whose weights start training")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out exists")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images")
    p.add_argument(
        "--labelled",
        default=None,
        help="train on this labelled set (al.train_steps steps) instead of a split",
    )
    p.add_argument("--pool", default=None, help="pool manifest (with --labelled)")
    _opt(p, "--model", "model.name", choices=_models())
    _opt(p, "--dropout", "model.dropout", type=float)
    for flag, key, kind in (("--epochs", "epochs", int), ("--batch-size", "batch_size", int),
                            ("--lr", "lr", float), ("--seed", "seed", int)):  # fmt: skip
        _opt(p, flag, f"train.{key}", type=kind)
    _opt(p, "--device", "train.device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--nproc", type=int, default=1, metavar="N",
        help="data-parallel processes on this machine (torchrun; gloo on CPU, NCCL on GPU); "
        "train.batch_size is the global batch",
    )  # fmt: skip


def _predict(p: argparse.ArgumentParser) -> None:
    _data(p)
    p.add_argument("--split", default=None, help="split to predict (default: data.val_split)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for <image_id>.png label-id maps")
    _opt(p, "--device", "train.device", help="auto, cpu, cuda, cuda:N or mps")


def _evaluate(p: argparse.ArgumentParser) -> None:
    _data(p)
    p.add_argument("--split", default=None, help="split to score (default: data.val_split)")
    p.add_argument("--checkpoint", default=None, help="checkpoint to evaluate (dropout off)")
    p.add_argument("--predictions", default=None, help="folder of label-id PNGs from any model")
    p.add_argument("--json", default=None, help="also write the scores as JSON here")
    _opt(p, "--device", "train.device", help="auto, cpu, cuda, cuda:N or mps")


def _score(p: argparse.ArgumentParser) -> None:
    _al(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--labelled", default=None, help="labelled set folder (None: nothing labelled)")
    p.add_argument("--out", required=True, help="scores Parquet file to write")
    _opt(p, "--mc-passes", "al.mc_passes", type=int)
    _opt(p, "--device", "train.device", help="auto, cpu, cuda, cuda:N or mps")


def _select(p: argparse.ArgumentParser) -> None:
    _al(p)
    p.add_argument("--round", type=_round_arg, required=True, help="r<k> or k; 0 = the seed set")
    p.add_argument("--scores", default=None, help="scores Parquet (rounds >= 1)")
    p.add_argument("--labelled", default=None)
    p.add_argument("--out", required=True, help="selection JSON to write")
    _opt(p, "--budget", "al.budget_per_round", type=int)


def _request(p: argparse.ArgumentParser) -> None:
    _al(p, pool=False)
    p.add_argument("--selection", required=True)
    p.add_argument("--scores", default=None, help="scores Parquet, for the heatmaps")
    p.add_argument("--out", required=True, help="request folder to write")


def _annotate(p: argparse.ArgumentParser) -> None:
    _al(p)
    p.add_argument("--request", required=True, help="request folder")
    p.add_argument("--labelled", default=None, help="labelled set before this round")
    p.add_argument("--out", required=True, help="delivery folder to write")
    p.add_argument("--inbox", default=None, help="folder of delivered masks (al.annotator human)")
    _opt(p, "--annotator", "al.annotator", choices=["oracle", "human"])
    _opt(p, "--label-format", "al.label_format", choices=["train_ids", "label_ids"])


def _export(p: argparse.ArgumentParser) -> None:
    _al(p)
    p.add_argument("--request", required=True, help="request folder")
    p.add_argument(
        "--format",
        action="append",
        required=True,
        choices=["label-studio", "cvat", "coco"],
        help="repeat for several",
    )
    p.add_argument("--out", required=True, help="folder for the tool files")
    p.add_argument(
        "--image-url-prefix",
        default=None,
        help="URL the tool loads images under (default: al.image_url_prefix, "
        "else each image's own path or URL)",
    )
    p.add_argument(
        "--predictions-from",
        default=None,
        metavar="CHECKPOINT",
        help="also pre-annotate the model's classes inside the requested regions",
    )


def _import(p: argparse.ArgumentParser) -> None:
    _al(p)
    p.add_argument(
        "--format", required=True, choices=["label-studio", "cvat-mask", "cityscapes", "coco"]
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="PATH_OR_URL",
        help="the tool's export: JSON file, zip archive or folder (path or s3://)",
    )
    p.add_argument("--request", required=True, help="request folder it answers")
    p.add_argument("--labelled", default=None, help="labelled set before this round (cost)")
    p.add_argument("--out", required=True, help="inbox folder to write (for annotate --inbox)")


def _merge(p: argparse.ArgumentParser) -> None:
    _al(p)
    p.add_argument("--labelled", default=None, help="labelled set before this round")
    p.add_argument("--request", required=True)
    p.add_argument("--delivery", required=True, help="oracle delivery, or a folder of PNG masks")
    _opt(p, "--label-format", "al.label_format", choices=["train_ids", "label_ids"])
    p.add_argument("--out", required=True, help="labelled set folder to write")


def _step(p: argparse.ArgumentParser) -> None:
    p.add_argument("step", choices=["superpixels", *ROUND_STEPS])
    p.add_argument("--round", type=_round_arg, default=None, help="r<k>; r0 = the seed round")
    p.add_argument("--base", default=DVC_BASE, help=f"rounds folder (default {DVC_BASE})")


def _round(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["add"])


def _params(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fill"])


def _bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")


def _run(p: argparse.ArgumentParser) -> None:
    _al(p, pool=False)
    for flag, key in (("--rounds", "rounds"), ("--budget", "budget_per_round"),
                      ("--initial-images", "initial_images"), ("--train-steps", "train_steps"),
                      ("--train-epochs", "train_epochs"),
                      ("--mc-passes", "mc_passes")):  # fmt: skip
        _opt(p, flag, f"al.{key}", type=int)
    _opt(p, "--pseudo-threshold", "al.pseudo_threshold", type=float,
         help="self-training: after each round's training, go on with the model's own "
         "predictions on unpaid pixels where its confidence is at least this (0: off)")  # fmt: skip
    _opt(p, "--out", "al.out", help="run folder (rounds, metrics.csv, learning_curve.png)")
    _opt(p, "--model", "model.name", choices=_models())
    p.add_argument(
        "--baseline", metavar="STRATEGY", choices=_strategies(), default=None,
        help="then run the same rounds with this strategy (e.g. random) into "
        "<out>/baseline-<strategy> and plot both curves (choices: %(choices)s)",
    )  # fmt: skip


COMMANDS: list[tuple[str, Command, Callable[[argparse.ArgumentParser], None], str]] = [
    ("make-synthetic", c.cmd_make_synthetic, _make_synthetic,
     "write the embedded synthetic Cityscapes-format dataset"),
    ("superpixels", c.cmd_superpixels, _superpixels,
     "compute superpixels of every pool image into the Parquet store"),
    ("train", c.cmd_train, _train, "train a segmentation model on a split or a labelled set"),
    ("predict", c.cmd_predict, _predict,
     "write Cityscapes-format label-id predictions (one PNG per image)"),
    ("evaluate", c.cmd_evaluate, _evaluate,
     "per-class IoU and mIoU of a checkpoint or a predictions folder"),
    ("score", c.cmd_score, _score, "MC-dropout scores of every unlabelled pool image (Parquet)"),
    ("select", c.cmd_select, _select,
     "choose the round's images or superpixels under the cost budget"),
    ("request", c.cmd_request, _request,
     "write the label request: CSV, pre-annotation masks, heatmaps"),
    ("annotate", c.cmd_annotate, _annotate,
     "labels for a request: simulated oracle, or validated human masks"),
    ("export", c.cmd_export, _export,
     "write a request as Label Studio tasks, a CVAT mask archive or COCO JSON"),
    ("import", c.cmd_import, _import,
     "read a Label Studio / CVAT / COCO export into an inbox for annotate --inbox"),
    ("merge", c.cmd_merge, _merge, "validate a delivery against its request and merge it"),
    ("step", c.cmd_step, _step,
     "one step of one pipeline round with the round layout's paths (what dvc.yaml runs)"),
    ("round", c.cmd_round_add, _round, "extend params.yaml's rounds list by one round"),
    ("params", c.cmd_params_fill, _params,
     "add the keys dvc.yaml's stages read that params.yaml lacks, at their defaults"),
    ("bench", c.cmd_bench, _bench,
     "label-efficiency benchmark (bench/label_efficiency.py; e.g. --preset quick)"),
    ("run", c.cmd_run, _run,
     "the whole active-learning loop: rounds of score/select/label/train/evaluate"),
]  # fmt: skip


def build_parser(description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alseg", description=description)
    parser.add_argument(
        "--params", default=None, help="params.yaml (default: ./params.yaml if present)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, fn, options, help_ in COMMANDS:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        options(p)
    return parser
