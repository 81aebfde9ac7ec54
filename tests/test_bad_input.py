"""Bad input fails fast with a message naming the file, key or value, and changes nothing.

Every case starts from a copy of one workspace that has finished the seed round
(params.yaml, a synthetic dataset, the superpixel store, request, delivery and labelled
set r0). A case breaks one input, runs one ``alseg`` command in-process and checks:
exit status 2, the expected message on stderr, and every file of the workspace byte for
byte as before (the labelled sets, the store, params.yaml; nothing added or left half
written).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from alseg_core import storage
from alseg_core.cli import main
from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic

PARAMS = """\
data:
  root: data/cs
synthetic: {n_train: 8, n_val: 2, height: 48, width: 96, seed: 0}
superpixels: {n_regions: 20, compactness: 0.02, store: data/superpixels, workers: 1}
model: {name: drn_d_22}
al: {initial_images: 2, budget_per_round: 10, mc_passes: 2}
rounds:
  r1: {prev: r0}
"""


def _run(ws: Path, *argv: str) -> int:
    return main(["--params", str(ws / "params.yaml"), "--no-progress", *argv])


@pytest.fixture(scope="module")
def base(tmp_path_factory, monkeypatch_module) -> Path:
    ws = tmp_path_factory.mktemp("workspace")
    (ws / "params.yaml").write_text(PARAMS)
    monkeypatch_module.chdir(ws)
    make_synthetic("data/cs", SyntheticSpec(n_train=8, n_val=2, height=48, width=96))
    assert _run(ws, "superpixels") == 0
    r0 = "data/rounds/r0"
    assert _run(ws, "select", "--round", "0", "--out", f"{r0}/selection.json") == 0
    assert _run(ws, "request", "--selection", f"{r0}/selection.json", "--out", f"{r0}/request") == 0
    assert _run(ws, "annotate", "--request", f"{r0}/request", "--out", f"{r0}/delivery") == 0
    argv = ["merge", "--request", f"{r0}/request", "--delivery", f"{r0}/delivery"]
    assert _run(ws, *argv, "--out", f"{r0}/labelled") == 0
    # A human delivery for the seed request: the oracle's masks, without its metadata.
    human = ws / "inbox"
    human.mkdir()
    for png in (ws / r0 / "delivery").glob("*.png"):
        shutil.copy(png, human / png.name)
    from alseg_core.models import build_model
    from alseg_core.training import checkpoint_state

    for name, classes in (("lraspp_mobilenet_v3_large", 19), ("drn_d_22", 7), ("drn_d_22", 19)):
        model = build_model(name, num_classes=classes)
        storage.save_checkpoint(
            str(ws / f"{name}-{classes}.pt"), checkpoint_state(model, dropout=0.5, epoch=1)
        )
    return ws


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _snapshot(ws: Path) -> dict[str, str]:
    return {
        str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(ws.rglob("*"))
        if p.is_file() and ".alseg" not in p.parts
    }


def _requested(ws: Path) -> list[str]:
    return sorted(p.stem for p in (ws / "inbox").glob("*.png"))


def _merge_inbox(ws: Path) -> list[str]:
    return [
        "merge", "--request", "data/rounds/r0/request", "--delivery", "inbox",
        "--out", "data/rounds/r0/labelled-again", "--labelled", "data/rounds/r0/labelled",
    ]  # fmt: skip


def _first_mask(ws: Path) -> Path:
    return ws / "inbox" / f"{_requested(ws)[0]}.png"


# ----------------------------------------------------------------------------- the cases


def corrupt_png(ws: Path) -> list[str]:
    _first_mask(ws).write_bytes(b"this is not a PNG at all")
    return _merge_inbox(ws)


def truncated_png(ws: Path) -> list[str]:
    mask = _first_mask(ws)
    mask.write_bytes(mask.read_bytes()[:60])
    return _merge_inbox(ws)


def mask_wrong_size(ws: Path) -> list[str]:
    storage.write_png(str(_first_mask(ws)), np.zeros((10, 10), np.uint8))
    return _merge_inbox(ws)


def mask_rgb(ws: Path) -> list[str]:
    storage.write_png(str(_first_mask(ws)), np.zeros((48, 96, 3), np.uint8))
    return _merge_inbox(ws)


def mask_16_bit(ws: Path) -> list[str]:
    storage.write_png(str(_first_mask(ws)), np.full((48, 96), 3, np.uint16))
    return _merge_inbox(ws)


def class_outside_table(ws: Path) -> list[str]:
    mask = np.zeros((48, 96), np.uint8)
    mask[0, 0] = 42
    storage.write_png(str(_first_mask(ws)), mask)
    return _merge_inbox(ws)


def label_id_outside_table(ws: Path) -> list[str]:
    storage.write_png(str(_first_mask(ws)), np.full((48, 96), 77, np.uint8))
    return [*_merge_inbox(ws), "--label-format", "label_ids"]


def image_not_in_request(ws: Path) -> list[str]:
    shutil.copy(_first_mask(ws), ws / "inbox" / "aachen_999999_000019.png")
    return _merge_inbox(ws)


def delivery_missing_images(ws: Path) -> list[str]:
    _first_mask(ws).unlink()
    return _merge_inbox(ws)


def delivery_escapes_folder(ws: Path) -> list[str]:
    argv = _merge_inbox(ws)
    argv[argv.index("inbox")] = "data/../inbox"
    return argv


def delivery_symlink_escapes(ws: Path) -> list[str]:
    mask = _first_mask(ws)
    outside = ws / "outside.png"
    shutil.move(mask, outside)
    mask.symlink_to(outside)
    return _merge_inbox(ws)


def _params(text: str) -> Callable[[Path], list[str]]:
    def prepare(ws: Path) -> list[str]:
        (ws / "params.yaml").write_text(text)
        return ["select", "--round", "0", "--out", "data/rounds/r0/selection-again.json"]

    return prepare


def _edit(old: str, new: str) -> str:
    assert old in PARAMS
    return PARAMS.replace(old, new)


def root_missing(ws: Path) -> list[str]:
    (ws / "params.yaml").write_text(_edit("root: data/cs", "root: data/nowhere"))
    return ["select", "--round", "0", "--out", "data/rounds/r0/selection-again.json"]


def root_is_a_file(ws: Path) -> list[str]:
    (ws / "afile").write_text("not a dataset")
    (ws / "params.yaml").write_text(_edit("root: data/cs", "root: afile"))
    return ["select", "--round", "0", "--out", "data/rounds/r0/selection-again.json"]


def checkpoint_other_model(ws: Path) -> list[str]:
    return ["evaluate", "--checkpoint", "lraspp_mobilenet_v3_large-19.pt", "--json", "e.json"]


def checkpoint_other_classes(ws: Path) -> list[str]:
    return ["evaluate", "--checkpoint", "drn_d_22-7.pt", "--json", "e.json"]


def checkpoint_pickle(ws: Path) -> list[str]:
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    (ws / "evil.pt").write_bytes(pickle.dumps({"model_state": Evil()}))
    return ["evaluate", "--checkpoint", "evil.pt", "--json", "e.json"]


def store_other_version(ws: Path) -> list[str]:
    import pyarrow.parquet as pq

    part = sorted((ws / "data" / "superpixels").glob("*.parquet"))[0]
    table = pq.read_table(part)
    meta = dict(table.schema.metadata) | {b"alseg_format": b"alseg-superpixels/0"}
    pq.write_table(table.replace_schema_metadata(meta), part)
    return ["request", "--selection", "data/rounds/r0/selection.json", "--out", "req-again"]


def store_truncated(ws: Path) -> list[str]:
    part = sorted((ws / "data" / "superpixels").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    return ["superpixels"]


# --- issue 13: inputs that silently changed what is labelled or charged, and tracebacks


def delivery_all_unlabelled(ws: Path) -> list[str]:
    storage.write_png(str(_first_mask(ws)), np.full((48, 96), 255, np.uint8))
    return _merge_inbox(ws)


def merge_out_is_labelled(ws: Path) -> list[str]:
    argv = _merge_inbox(ws)
    argv[argv.index("data/rounds/r0/labelled-again")] = "data/rounds/r0/labelled"
    return argv


def merge_out_inside_labelled(ws: Path) -> list[str]:
    argv = _merge_inbox(ws)
    argv[argv.index("data/rounds/r0/labelled-again")] = "data/rounds/r0/labelled/next"
    return argv


def merge_labelled_typo(ws: Path) -> list[str]:
    argv = _merge_inbox(ws)
    argv[argv.index("data/rounds/r0/labelled")] = "data/rounds/r0/labeled"
    return argv


def score_labelled_typo(ws: Path) -> list[str]:
    return ["score", "--checkpoint", "drn_d_22-19.pt", "--labelled", "data/rounds/r0/labeled",
            "--out", "scores.parquet"]  # fmt: skip


def annotate_labelled_typo(ws: Path) -> list[str]:
    return ["annotate", "--request", "data/rounds/r0/request", "--labelled",
            "data/rounds/r0/labeled", "--out", "delivery-again"]  # fmt: skip


def duplicate_section(ws: Path) -> list[str]:
    return _params(PARAMS + "al: {budget_per_round: 99}\n")(ws)


def duplicate_key(ws: Path) -> list[str]:
    return _params(_edit("mc_passes: 2}", "mc_passes: 2, mc_passes: 5}"))(ws)


def _region_selection(ws: Path) -> dict:
    """The seed selection turned into a superpixel request of regions 1 and 2 per image."""
    import json

    sel = json.loads((ws / "data/rounds/r0/selection.json").read_text())
    for item in sel["items"]:
        item.update(regions=[1, 2], full_image=False)
    return sel


def request_with_other_store(ws: Path) -> list[str]:
    import json

    from alseg_core.superpixels import SuperpixelParams, SuperpixelStore

    sel = _region_selection(ws)
    other = SuperpixelStore("elsewhere", SuperpixelParams(n_regions=50, compactness=0.02))
    sel["superpixel_store"] = other.fingerprint()
    (ws / "sel.json").write_text(json.dumps(sel))
    return ["request", "--selection", "sel.json", "--out", "req-again"]


def annotate_with_other_store(ws: Path) -> list[str]:
    import json

    from alseg_core.superpixels import SuperpixelParams, SuperpixelStore

    sel = _region_selection(ws)
    sel["superpixel_store"] = SuperpixelStore(
        "x", SuperpixelParams(n_regions=20, compactness=0.02)
    ).fingerprint()
    (ws / "sel.json").write_text(json.dumps(sel))
    assert _run(ws, "request", "--selection", "sel.json", "--out", "req") == 0
    (ws / "params.yaml").write_text(_edit("n_regions: 20", "n_regions: 30"))
    return ["annotate", "--request", "req", "--out", "delivery-again"]


def greyscale_pool_image(ws: Path) -> list[str]:
    from PIL import Image

    image = sorted((ws / "data/cs/leftImg8bit/train").rglob("*.png"))[0]
    Image.open(image).convert("L").save(image)
    return ["train", "--split", "train", "--epochs", "1", "--out", "m.pt"]


def cuda_without_gpu(ws: Path) -> list[str]:
    return ["train", "--split", "train", "--epochs", "1", "--out", "m.pt", "--device", "cuda"]


def import_unknown_class(ws: Path) -> list[str]:
    import json

    r0 = ws / "data/rounds/r0/request"
    ids = sorted(
        json.loads((r0 / "request.json").read_text())["items"], key=lambda i: i["image_id"]
    )
    from alseg_core.annotation.formats.brush_rle import mask_to_rle

    full = np.ones((48, 96), bool)
    tasks = [{"id": n, "data": {"image_id": i["image_id"]}, "annotations": [{"result": [
        {"id": "a", "type": "brushlabels", "from_name": "tag", "to_name": "image",
         "original_width": 96, "original_height": 48,
         "value": {"format": "rle", "rle": mask_to_rle(full), "brushlabels": ["lamppost"]}}]}]}
        for n, i in enumerate(ids)]  # fmt: skip
    (ws / "ls.json").write_text(json.dumps(tasks))
    return ["import", "--format", "label-studio", "--from", "ls.json", "--request",
            "data/rounds/r0/request", "--out", "inbox-ls"]  # fmt: skip


def select_with_other_labelled_set(ws: Path) -> list[str]:
    argv = ["score", "--checkpoint", "drn_d_22-19.pt", "--labelled", "data/rounds/r0/labelled",
            "--out", "scores.parquet"]  # fmt: skip
    assert _run(ws, *argv) == 0
    # Scored against round 0's labels, selected as if nothing were labelled.
    return ["select", "--round", "1", "--scores", "scores.parquet", "--out", "sel1.json"]


def import_other_request(ws: Path) -> list[str]:
    argv = import_unknown_class(ws)
    tasks = json.loads((ws / "ls.json").read_text())
    for task in tasks:
        task["data"]["request_id"] = "r7-0123456789ab"
        task["annotations"][0]["result"][0]["value"]["brushlabels"] = ["road"]
    (ws / "ls.json").write_text(json.dumps(tasks))
    return argv


def import_wrong_format(ws: Path) -> list[str]:
    (ws / "coco.json").write_text('{"images": [], "annotations": [], "categories": []}')
    return ["import", "--format", "label-studio", "--from", "coco.json", "--request",
            "data/rounds/r0/request", "--out", "inbox-ls"]  # fmt: skip


def import_missing_file(ws: Path) -> list[str]:
    return ["import", "--format", "cvat-mask", "--from", "export.zip", "--request",
            "data/rounds/r0/request", "--out", "inbox-cvat"]  # fmt: skip


CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("corrupt PNG", corrupt_png, r"inbox/\w+\.png: not a readable image"),
    ("truncated PNG", truncated_png, r"inbox/\w+\.png: not a readable image"),
    ("mask of the wrong size", mask_wrong_size, r"\.png: mask size 10x10 differs from image \w+ size 96x48"),
    ("RGB mask", mask_rgb, r"\.png: expected a single-channel label PNG, got shape \(48, 96, 3\)"),
    ("16-bit mask", mask_16_bit, r"\.png: expected an 8-bit label PNG, got int32"),
    ("train id outside the table", class_outside_table, r"\.png: class ids \[42\] are not train ids 0\.\.18 or 255"),
    ("label id outside the table", label_id_outside_table, r"\.png: label ids \[77\] are outside the Cityscapes label table"),
    ("labels for an image not in the request", image_not_in_request, r"aachen_999999_000019\.png: image id 'aachen_999999_000019' is not in request"),
    ("delivery missing an image", delivery_missing_images, r"inbox: delivery is missing 1 requested image\(s\)"),
    ("delivery path with ../", delivery_escapes_folder, r"data/\.\./inbox: a delivery path must not contain '\.\.'"),
    ("delivery file linking outside", delivery_symlink_escapes, r"\.png: links outside the delivery folder"),
    ("empty params.yaml", _params(""), r"params\.yaml: params file is empty"),
    ("malformed params.yaml", _params("al: [unclosed\n"), r"params\.yaml: not valid YAML"),
    ("unknown key", _params(_edit("al: {", "al: {budjet: 3, ")), r"params\.yaml: unknown key 'al\.budjet'"),
    ("negative budget", _params(_edit("budget_per_round: 10", "budget_per_round: -5")), r"al\.budget_per_round must be >= 0, got -5"),
    ("D = 0", _params(_edit("mc_passes: 2", "mc_passes: 0")), r"al\.mc_passes \(D\) must be >= 1, got 0"),
    ("dropout p outside 0..1", _params(_edit("name: drn_d_22", "name: drn_d_22, dropout: 1.5")), r"model\.dropout must be in \[0, 1\), got 1\.5"),
    ("round names a missing previous round", _params(_edit("r1: {prev: r0}", "r2: {prev: r1}")), r"rounds\.r2 names previous round r1, which is not listed before it"),
    ("dataset root missing", root_missing, r"dataset root '.*data/nowhere' does not exist"),
    ("dataset root not a folder", root_is_a_file, r"afile: dataset root is not a folder"),
    ("checkpoint of another model", checkpoint_other_model, r"lraspp_mobilenet_v3_large-19\.pt: checkpoint is for model 'lraspp_mobilenet_v3_large', expected 'drn_d_22'"),
    ("checkpoint with other classes", checkpoint_other_classes, r"drn_d_22-7\.pt: checkpoint has 7 classes, expected 19"),
    ("checkpoint holding a pickle", checkpoint_pickle, r"evil\.pt: not a loadable alseg checkpoint"),
    ("store of another version", store_other_version, r"\.parquet: superpixel store format 'alseg-superpixels/0', expected 'alseg-superpixels/1'"),
    ("truncated store part", store_truncated, r"\.parquet: not a readable Parquet file"),
    # issue 13
    ("delivery all 255 for the requested image", delivery_all_unlabelled, r"inbox/\w+\.png: no label inside the requested image of image \w+"),
    ("merge --out is --labelled", merge_out_is_labelled, r"the merged set data/rounds/r0/labelled would overwrite or nest in the labelled set"),
    ("merge --out inside --labelled", merge_out_inside_labelled, r"labelled/next would overwrite or nest in the labelled set"),
    ("typo in merge --labelled", merge_labelled_typo, r"data/rounds/r0/labeled: no labelled set there"),
    ("typo in score --labelled", score_labelled_typo, r"data/rounds/r0/labeled: no labelled set there"),
    ("typo in annotate --labelled", annotate_labelled_typo, r"data/rounds/r0/labeled: no labelled set there"),
    ("duplicate section in params.yaml", duplicate_section, r"params\.yaml: key 'al' appears twice in one mapping \(lines 6 and 9\)"),
    ("duplicate key in params.yaml", duplicate_key, r"params\.yaml: key 'mc_passes' appears twice"),
    ("request with another store than scored", request_with_other_store, r"sel\.json: its region ids index superpixel store \w+, but the store given now is \w+"),
    ("annotate with another store than requested", annotate_with_other_store, r"req/request\.json: its region ids index superpixel store"),
    ("greyscale pool image", greyscale_pool_image, r"leftImg8bit\.png: expected an RGB image, got a single-channel image of 96x48"),
    ("unknown class name in a Label Studio export", import_unknown_class, r"ls\.json: task 0, result a: unknown class name 'lamppost'"),
    ("select with another labelled set than scored", select_with_other_labelled_set, r"scores\.parquet: these scores were computed against another labelled set than the one given"),
    ("Label Studio export of another request", import_other_request, r"ls\.json: task 0: the task belongs to request 'r7-0123456789ab', not 'r0-\w+'"),
    ("a COCO file given as Label Studio", import_wrong_format, r"coco\.json: expected a list of tasks"),
    ("tool export missing", import_missing_file, r"export\.zip: no such file or folder"),
]  # fmt: skip
if not __import__("torch").cuda.is_available():
    CASES.append(("--device cuda without a GPU", cuda_without_gpu, r"device 'cuda' was asked, but this machine has no usable CUDA GPU"))  # fmt: skip


def test_the_table_has_at_least_15_cases():
    assert len(CASES) >= 15 and len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "prepare", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_fast_and_changes_nothing(
    name, prepare, message, base, tmp_path, monkeypatch, capsys
):
    ws = tmp_path / "ws"
    shutil.copytree(base, ws, symlinks=True)
    monkeypatch.chdir(ws)
    argv = prepare(ws)
    before = _snapshot(ws)
    capsys.readouterr()
    code = _run(ws, *argv)
    out = capsys.readouterr()
    assert code == 2, (name, out.out, out.err)
    assert re.search(message, out.err), f"{name}: {out.err!r} does not match {message!r}"
    assert "pickle code ran" not in out.out
    assert _snapshot(ws) == before, f"{name}: the workspace changed"


def test_ctrl_c_during_train_exits_130_with_a_message_and_resumes(base, tmp_path):
    """SIGINT (Ctrl-C) in training: exit 130, one line saying what to do, no traceback,
    nothing changed but the finished-epoch checkpoint; the same command then resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ws = tmp_path / "ws"
    shutil.copytree(base, ws, symlinks=True)
    before = _snapshot(ws)
    argv = [str(Path(sys.executable).parent / "alseg"), "--params", "params.yaml", "--no-progress",
            "train", "--split", "train", "--model", "lraspp_mobilenet_v3_large", "--epochs",
            "30", "--out", "m.pt"]  # fmt: skip
    # A suite started in the background by a non-interactive shell inherits SIGINT
    # ignored (and Python then installs no KeyboardInterrupt handler): the child starts
    # with the default disposition, as under a terminal.
    proc = subprocess.Popen(argv, cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    partial = ws / "m.pt.partial"
    deadline = time.time() + 240
    while not partial.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert partial.exists(), "training wrote no epoch checkpoint"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "alseg train: interrupted" in err and "run the same command again" in err
    after = _snapshot(ws)
    added = set(after) - set(before)
    assert added == {"m.pt.partial"}, added  # the last finished epoch, nothing half-written
    assert all(after[k] == v for k, v in before.items())
    # The same command goes on from the finished epochs.
    resumed = subprocess.run(argv, cwd=ws, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after epoch" in resumed.stdout, resumed.stdout
    assert (ws / "m.pt").exists() and not partial.exists()
