"""The ``al-cycle`` flow: one active-learning round as DVC stages driven by Prefect.

superpixels -> (seed round if needed) -> score -> select -> request -> labels (oracle,
or export + suspend until a human delivery) -> annotate -> merge -> train -> evaluate
-> publish -> commit + tag ``round-<k>`` + ``dvc push``. The stage names and their order
come from ``alseg_core.pipeline.layout``, as do dvc.yaml's. A re-run (also the re-run
after a suspend) skips every stage DVC finds up to date.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput

from alseg_core.config import load_config
from alseg_core.pipeline.layout import BEFORE_LABELS, ROUND_STEPS, SUPERPIXELS_STAGE, stage_name
from tasks.pipeline import (
    commit_tag_push,
    export_request,
    fetch_delivery,
    next_round,
    publish_artifacts,
    repro,
)


class LabelDelivery(RunInput):
    """What a resumed flow receives: where the labels are (path or s3:// URL) and in what
    form: ``masks`` (a folder of <image_id>.png) or a tool's export (``label-studio``,
    ``cvat-mask``, ``cityscapes``, ``coco``)."""

    url: str
    format: str = "masks"


@flow(name="al-cycle", log_prints=True)
def al_cycle(repo: str = ".", suspend_timeout_s: int = 7 * 24 * 3600) -> dict:
    """Run the next round of the pipeline in the DVC repo at ``repo``."""
    repo = str(Path(repo).resolve())
    k = next_round(repo)
    cfg = load_config(str(Path(repo) / "params.yaml"))
    print(f"al-cycle: round {k} in {repo} (annotator: {cfg.al.annotator})")
    repro(SUPERPIXELS_STAGE, repo)
    # The seed round's stages (and what they need), when not done yet.
    repro(stage_name("publish", 0), repo, upstream=True)
    for step in BEFORE_LABELS:
        repro(stage_name(step, k), repo)
    request_url = None
    if cfg.al.annotator == "human":
        request_url = export_request(repo, k, cfg.al.export)
        tools = ", ".join(f"{f}/" for f in cfg.al.export_formats)
        print(f"round {k}: request exported to {request_url} (request.csv, {tools}); "
              "waiting for labels")  # fmt: skip
        delivery = suspend_flow_run(
            wait_for_input=LabelDelivery, timeout=suspend_timeout_s, key=f"labels-r{k}"
        )
        fetch_delivery(repo, k, delivery.url, delivery.format)
    for step in ROUND_STEPS[len(BEFORE_LABELS) :]:
        repro(stage_name(step, k), repo)
    publish_artifacts(repo, k, request_url)
    tag = commit_tag_push(repo, k)
    return {"round": k, "tag": tag}
