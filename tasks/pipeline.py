"""Prefect tasks of the al-cycle flow.

Every computing step runs its DVC stage (``dvc repro <stage>@<round>``), so DVC's lock
file records what ran and a re-run skips what is up to date. IO-bound tasks retry with
backoff. Tasks return paths, never big objects.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prefect import task
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from alseg_core import storage
from alseg_core.annotation import check_delivery_path
from alseg_core.config import load_config
from alseg_core.pipeline.layout import RoundLayout
from alseg_core.pipeline.steps.select import describe_selection

LAYOUT = RoundLayout()  # the DVC pipeline's round layout, as in dvc.yaml

#: Lines of `dvc repro` output that are DVC's, not the stage's.
DVC_CHATTER = ("Running stage", "Updating lock file", "Use `dvc push`", "To track the changes",
               "Stage '", "> ", "\t", "git add", "Data and pipelines are up to date",
               "Verifying data sources", "Pipeline")  # fmt: skip

CURVE_ARTIFACT = "al-learning-curve"

IO_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30]}


def _tool(name: str) -> str:
    """The executable of the environment this code runs in (alseg, dvc, ...)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def _env() -> dict[str, str]:
    """This environment with its own bin/ first on PATH (the stages call ``alseg``)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


#: DVC's refusal when dvc.yaml lists a param that params.yaml lacks (after an upgrade).
MISSING_PARAMS = "are missing from 'params.yaml'"


def _hint(out: str) -> str:
    if MISSING_PARAMS in out:
        return (
            "\nparams.yaml lacks keys this version's stages read: `alseg params fill` adds "
            "them at their defaults (README: Upgrading alseg in a repo with finished rounds)"
        )
    return ""


def _run(args: list[str], repo: str) -> str:
    env = _env()
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        out, err = result.stdout, result.stderr
        raise RuntimeError(
            f"{' '.join(args)} failed in {repo} (exit {result.returncode}):\n"
            f"{out[-2000:]}\n{err[-4000:]}{_hint(out + err)}"
        )
    return result.stdout


def _stream(args: list[str], repo: str, on_line: Callable[[str], None]) -> str:
    """Run ``args``, handing each output line (stdout and stderr) to ``on_line`` as it
    comes, so a long stage shows its progress in the task log while it runs."""
    env = _env()
    lines: list[str] = []
    with subprocess.Popen(
        args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        bufsize=1,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            on_line(line.rstrip("\n"))
        code = proc.wait()
    out = "".join(lines)
    if code != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed in {repo} (exit {code}):\n{out[-6000:]}{_hint(out)}"
        )
    return out


#: A progress line of an alseg step (``alseg_core.progress``): "score: 120/400 img [..]".
PROGRESS_LINE = re.compile(r"^(?P<what>[\w ]+): (?P<done>\d+)/(?P<total>\d+) \w+ \[")


class _ScoreProgress:
    """A Prefect progress artifact that follows the score step's progress lines."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.artifact = None

    def __call__(self, line: str) -> None:
        match = PROGRESS_LINE.match(line)
        if not (match and match["what"] == "score" and self.stage.startswith("score")):
            return
        pct = 100.0 * int(match["done"]) / max(1, int(match["total"]))
        if self.artifact is None:
            key = "al-scoring-" + re.sub(r"[^a-z0-9-]", "-", self.stage.lower())
            self.artifact = create_progress_artifact(
                pct, key=key, description=f"{self.stage}: pool images scored"
            )
        else:
            update_progress_artifact(self.artifact, pct)

    def done(self) -> None:
        if self.artifact is not None:
            update_progress_artifact(self.artifact, 100.0)


@task(name="dvc-repro", task_run_name="repro {stage}", retries=1, retry_delay_seconds=5)
def repro(stage: str, repo: str, *, upstream: bool = False) -> str:
    """Run one DVC stage when it is out of date.

    The flow runs the stages in pipeline order, so by default only ``stage`` itself is
    checked (``--single-item``: no status walk over everything upstream, about half a
    second per stage); ``upstream=True`` also reproduces what it needs. The stage's
    lines reach the task log as they come (alseg's progress lines every ~15 s, then its
    result line: cost, mIoU, ...), without DVC's own chatter; then the duration. While
    the pool is scored, a progress artifact follows it.
    """
    args = [_tool("dvc"), "repro", stage] if upstream else [_tool("dvc"), "repro", "-s", stage]
    start = time.perf_counter()
    progress = _ScoreProgress(stage)

    def on_line(line: str) -> None:
        if line.strip() and not line.startswith(DVC_CHATTER):
            print(line.strip(), flush=True)
        progress(line)

    out = _stream(args, repo, on_line)
    progress.done()
    seconds = time.perf_counter() - start
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    if ran:
        print(f"{stage}: ran {', '.join(ran)} in {seconds:.1f} s")
    else:
        print(f"{stage}: up to date ({seconds:.1f} s)")
    return stage


@task(name="next-round")
def next_round(repo: str) -> int:
    """The first round listed in params.yaml without a ``round-<k>`` tag; adds one if none."""
    tags = set(_run(["git", "tag", "--list", "round-*"], repo).split())
    cfg = load_config(str(Path(repo) / "params.yaml"))
    for spec in cfg.rounds:
        if f"round-{spec.k}" not in tags:
            return spec.k
    out = _run([_tool("alseg"), "--params", "params.yaml", "round", "add"], repo)
    print(out.strip())
    return load_config(str(Path(repo) / "params.yaml")).rounds[-1].k


@task(name="export-request", **IO_RETRIES)
def export_request(repo: str, k: int, export_root: str) -> str:
    """Copy the round's request folder to the configured export location (path or s3://)."""
    source = Path(repo) / LAYOUT.request(k)
    target = storage.join(export_root, f"round-{k}", "request")
    for path in sorted(source.rglob("*")):
        if path.is_file():
            storage.write_bytes(
                storage.join(target, *path.relative_to(source).parts), path.read_bytes()
            )
    return target


#: What a delivery URL may hold: a folder of masks, or an annotation tool's export.
DELIVERY_FORMATS = ("masks", "label-studio", "cvat-mask", "cityscapes", "coco")


@task(name="fetch-delivery", **IO_RETRIES)
def fetch_delivery(repo: str, k: int, url: str, fmt: str = "masks") -> str:
    """Put the delivered labels at ``url`` into ``deliveries/r<k>/``.

    ``masks``: copy the ``<image_id>.png`` masks. A tool's export (``label-studio``,
    ``cvat-mask``, ``cityscapes``, ``coco``): ``alseg import`` converts and validates it
    against the round's request (class names, sizes, images) before anything is written.
    """
    if fmt not in DELIVERY_FORMATS:
        raise ValueError(f"delivery format {fmt!r}: expected one of {DELIVERY_FORMATS}")
    inbox = Path(repo) / LAYOUT.inbox(k)
    if fmt != "masks":
        out = _run(
            [_tool("alseg"), "--no-progress", "import", "--format", fmt, "--from", url,
             "--request", LAYOUT.request(k), "--pool", LAYOUT.pool, "--out", str(inbox)],
            repo,
        )  # fmt: skip
        print(out.strip())
        return str(inbox)
    check_delivery_path(url)
    names = [
        u.replace("\\", "/").rsplit("/", 1)[-1] for u in storage.glob(storage.join(url, "*.png"))
    ]
    if not names:
        raise ValueError(f"{url}: no <image_id>.png masks delivered")
    with storage.output_dir(str(inbox)) as target:  # the inbox appears whole or not at all
        for name in names:
            data = storage.read_bytes(storage.join(url, name))
            storage.write_bytes(storage.join(target, name), data)
    return str(inbox)


@task(name="publish-artifacts")
def publish_artifacts(repo: str, k: int, request_url: str | None) -> str:
    """Markdown artifacts: the learning curve so far and where the request files are."""
    publish = Path(repo) / LAYOUT.publish(k)
    rows = (Path(repo) / LAYOUT.curve(k)).read_text().strip().splitlines()
    header = rows[0].split(",")
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(r.split(",")) + " |" for r in rows[1:]]
    request = Path(repo) / LAYOUT.request(k)
    files = [
        f"- request list: `{request / 'request.csv'}`",
        f"- pre-annotation masks (for tools): `{request / 'preannotations'}`",
        f"- guides (regions over the photo): `{request / 'guides'}`",
        f"- heatmaps (uncertainty over the photo): `{request / 'heatmaps'}`",
    ]
    if request_url:
        files.append(f"- exported for annotators: `{request_url}`")
    selection = storage.read_json(str(Path(repo) / LAYOUT.selection(k)))
    create_markdown_artifact(
        key=f"al-round-{k}",
        markdown=f"# Active-learning round {k}\n\n"
        + "\n".join(table)
        + "\n\n## Label request\n\n"
        + describe_selection(selection, LAYOUT.selection(k))
        + "\n\n"
        + "\n".join(files)
        + "\n",
        description=f"alseg round {k}: metrics and label request",
    )
    # One key for the learning curve: each round adds a version (the UI shows the latest
    # and the history).
    curve = [dict(zip(header, r.split(","), strict=True)) for r in rows[1:]]
    create_table_artifact(
        key=CURVE_ARTIFACT,
        table=curve,
        description=f"alseg learning curve after round {k} (mIoU vs % of the full cost)",
    )
    # The plot itself, where the UI shows images: a data URL needs no file server.
    png = (Path(repo) / LAYOUT.plot(k)).read_bytes()
    create_image_artifact(
        image_url="data:image/png;base64," + base64.b64encode(png).decode(),
        key=CURVE_ARTIFACT + "-plot",
        description=f"alseg learning curve after round {k}",
    )
    return str(publish)


@task(name="commit-tag-push", **IO_RETRIES)
def commit_tag_push(repo: str, k: int) -> str:
    """Commit the lock file and params, tag ``round-<k>``, push the round's data to the remote."""
    git = ["git", "-c", "user.name=alseg", "-c", "user.email=alseg@localhost"]
    paths = ["dvc.lock", "params.yaml"] + (
        [LAYOUT.inbox_base] if (Path(repo) / LAYOUT.inbox_base).exists() else []
    )
    _run([*git, "add", *paths], repo)
    # The headline and per-class metrics (small, under the ignored data/): in git, so a
    # clone's `dvc metrics show` and `dvc metrics diff round-1 round-2` have them.
    headline = [p for p in (LAYOUT.headline, LAYOUT.per_class) if (Path(repo) / p).exists()]
    if headline:
        _run([*git, "add", "-f", *headline], repo)
        paths += headline
    status = _run(["git", "status", "--porcelain", "--", *paths], repo)
    if status.strip():
        _run([*git, "commit", "-m", f"alseg round {k}"], repo)
    tag = f"round-{k}"
    if tag not in _run(["git", "tag", "--list", tag], repo).split():
        _run([*git, "tag", tag], repo)
    if _run([_tool("dvc"), "remote", "list"], repo).strip():
        _run([_tool("dvc"), "push"], repo)
    else:
        print(f"round {k}: no DVC remote configured, nothing pushed (dvc remote add -d ...)")
    return tag
