"""Step: per-class IoU and mIoU of a checkpoint (or of a folder of predictions)."""

from __future__ import annotations

from collections.abc import Sequence

from alseg_core import storage
from alseg_core.datasets.cityscapes import Sample


def evaluate_step(
    checkpoint: str | None,
    samples: Sequence[Sample],
    *,
    out: str | None = None,
    predictions: str | None = None,
    model_name: str | None = None,
    num_classes: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = False,
) -> dict:
    """Scores of ``checkpoint`` (dropout off), or of label-id PNGs in ``predictions``.

    Returns and (with ``out``) writes {mIoU, per-class IoU, source, n_images}.
    """
    from alseg_core.evaluation import evaluate_model, evaluate_predictions, scores_json

    if (checkpoint is None) == (predictions is None):
        raise ValueError("evaluate: give exactly one of a checkpoint or a predictions folder")
    if checkpoint is not None:
        from alseg_core.training import load_model

        model = load_model(checkpoint, model_name=model_name, num_classes=num_classes)
        scores = evaluate_model(
            model, samples, batch_size=batch_size, device=device, progress=progress
        )
    else:
        scores = evaluate_predictions(predictions, samples)
    report = scores_json(scores)
    report["n_images"] = len(samples)
    if out:
        storage.write_json(out, report)
    return report
