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

    for name, classes in (("lraspp_mobilenet_v3_large", 19), ("drn_d_22", 7)):
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
]  # fmt: skip


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
