"""The alseg command line, run in-process through ``main``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from alseg_core import storage
from alseg_core.cli import build_parser, main
from alseg_core.datasets import cityscapes

STEPS = ["make-synthetic", "superpixels", "train", "predict", "evaluate"]


@pytest.mark.parametrize("step", STEPS)
def test_help_of_every_step(step, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([step, "--help"])
    assert exit_info.value.code == 0
    assert "usage: alseg " + step in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "alseg_core.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and all(step in out.stdout for step in STEPS)


def test_train_predict_evaluate_agree(synthetic_root, tmp_path, capsys):
    root = str(synthetic_root)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data:\n  root: {root}\nmodel:\n  name: drn_d_22\ntrain:\n  epochs: 1\n  batch_size: 4\n"
    )
    ckpt = str(tmp_path / "m.pt")
    base = ["--params", str(params), "--no-progress"]
    assert main([*base, "train", "--out", ckpt, "--limit", "8"]) == 0
    assert "trained drn_d_22 on 8 images: 1 epochs" in capsys.readouterr().out

    preds = str(tmp_path / "preds")
    assert main([*base, "predict", "--checkpoint", ckpt, "--out", preds]) == 0
    val = cityscapes.list_samples(root, "val")
    files = sorted(p.name for p in (tmp_path / "preds").iterdir())
    assert files == sorted(f"{s.image_id}.png" for s in val)
    pred = storage.read_image(str(tmp_path / "preds" / files[0]))
    # Results format holds label ids (7 = road ...), never train ids like 0 or 1.
    assert set(np.unique(pred)) <= {
        7,
        8,
        11,
        12,
        13,
        17,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        31,
        32,
        33,
    }

    j1, j2 = str(tmp_path / "ckpt.json"), str(tmp_path / "preds.json")
    assert main([*base, "evaluate", "--checkpoint", ckpt, "--json", j1]) == 0
    assert main([*base, "evaluate", "--predictions", preds, "--json", j2]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "road" in out
    a, b = json.loads(open(j1).read()), json.loads(open(j2).read())
    assert a["mIoU"] == pytest.approx(b["mIoU"]) and a["per_class_IoU"] == b["per_class_IoU"]
    assert a["n_images"] == len(val)


def test_synthetic_and_superpixels_on_s3(s3_bucket, capsys):
    root, store = f"{s3_bucket}/data", f"{s3_bucket}/sp"
    args = ["--no-progress"]
    assert main([*args, "make-synthetic", "--root", root, "--n-train", "3", "--n-val", "1",
                 "--height", "48", "--width", "96"]) == 0  # fmt: skip
    assert main([*args, "superpixels", "--root", root, "--store", store, "--workers", "1"]) == 0
    assert main([*args, "superpixels", "--root", root, "--store", store, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 images computed (new or changed)" in out
    assert "0 images computed (new or changed), 3 already stored" in out


def test_bad_inputs_exit_2_with_named_cause(tmp_path, synthetic_root, capsys):
    assert main(["evaluate", "--root", str(tmp_path / "missing"), "--predictions", "x"]) == 2
    assert "dataset root" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--root", str(synthetic_root), "--model", "nope", "--out",
              str(tmp_path / "m.pt")])  # fmt: skip
    assert exit_.value.code == 2
    assert "argument --model: invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    out_dir = tmp_path / "preds"
    assert (
        main(
            [
                "predict",
                "--root",
                str(synthetic_root),
                "--checkpoint",
                str(bad),
                "--out",
                str(out_dir),
            ]
        )
        == 2
    )
    assert "bad.pt: not a loadable alseg checkpoint" in capsys.readouterr().err
    assert not out_dir.exists()


def test_help_is_readable_and_lists_choices(capsys):
    from alseg_core.cli import build_parser
    from alseg_core.cli.parser import COMMANDS

    parser = build_parser()
    assert "``" not in parser.description
    for name, *_ in COMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        text = capsys.readouterr().out
        assert "PARAMS__" not in text, name
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    text = capsys.readouterr().out
    assert "--strategy {bald," in text and "mc_variance," in text
    assert "--unit {image,superpixel}" in text and "--model {" in text and "drn_d_22" in text
    assert "--rounds ROUNDS" in text and "--root ROOT" in text


def test_a_bad_value_is_blamed_on_where_it_was_given(tmp_path, capsys):
    from alseg_core.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--strategy", "foo"])
    assert exit_.value.code == 2
    assert "argument --strategy: invalid choice: 'foo'" in capsys.readouterr().err
    params = tmp_path / "params.yaml"
    params.write_text("al: {rounds: 2}\n")
    assert main(["--params", str(params), "run", "--rounds", "-3"]) == 2
    err = capsys.readouterr().err
    assert "command line --rounds -3: al.rounds must be >= 1, got -3" in err
    assert str(params) not in err
    params.write_text("al: {rounds: -4}\n")
    assert main(["--params", str(params), "run", "--rounds", "3"]) == 2
    assert f"{params}: al.rounds must be >= 1, got -4" in capsys.readouterr().err
