"""The pipeline steps: one function each, with explicit inputs and outputs.

The ``alseg`` subcommands call these; ``dvc.yaml``'s stages call the subcommands; the
Prefect flow runs the DVC stages; ``alseg run`` calls these directly. Each step lives in
its own module, which its DVC stage lists as a dependency.
"""

from alseg_core.pipeline.steps.annotate import annotate_step
from alseg_core.pipeline.steps.evaluate import evaluate_step
from alseg_core.pipeline.steps.merge import merge_step
from alseg_core.pipeline.steps.predict import predict_step
from alseg_core.pipeline.steps.publish import publish_step
from alseg_core.pipeline.steps.request import request_step
from alseg_core.pipeline.steps.score import score_step
from alseg_core.pipeline.steps.select import select_step
from alseg_core.pipeline.steps.superpixels import superpixels_step, write_pool_manifest
from alseg_core.pipeline.steps.train import train_step

__all__ = [
    "annotate_step",
    "evaluate_step",
    "merge_step",
    "predict_step",
    "publish_step",
    "request_step",
    "score_step",
    "select_step",
    "superpixels_step",
    "train_step",
    "write_pool_manifest",
]
