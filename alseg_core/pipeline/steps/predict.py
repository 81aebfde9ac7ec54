"""Step: Cityscapes-format predictions (one label-id PNG per image, named after it)."""

from __future__ import annotations

from collections.abc import Sequence

from alseg_core import storage
from alseg_core.datasets.cityscapes import Sample


def predict_step(
    checkpoint: str,
    samples: Sequence[Sample],
    out_dir: str,
    *,
    model_name: str | None = None,
    num_classes: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = False,
) -> int:
    """Write ``<out_dir>/<image_id>.png`` label ids for every sample; returns the count."""
    from alseg_core.datasets.labels import train_ids_to_label_ids
    from alseg_core.evaluation import prediction_url
    from alseg_core.inference import predict
    from alseg_core.training import load_model

    model = load_model(checkpoint, model_name=model_name, num_classes=num_classes)
    n = 0
    for sample, pred in predict(
        model, samples, batch_size=batch_size, device=device, progress=progress
    ):
        storage.write_png(prediction_url(out_dir, sample.image_id), train_ids_to_label_ids(pred))
        n += 1
    return n
