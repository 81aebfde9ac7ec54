"""params.yaml validation: unknown keys and bad values name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from alseg_core.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_yaml_loads():
    cfg = load_config(str(REPO / "params.yaml"))
    assert cfg.superpixels.n_regions == 100 and cfg.model.dropout == 0.5
    assert cfg.train.scale_range == (0.75, 1.25) and cfg.train.crop is None


def test_overrides_win_over_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  epochs: 3\n")
    cfg = load_config(str(p), {"train.epochs": 5, "model.name": "drn_d_22"})
    assert cfg.train.epochs == 5 and cfg.model.name == "drn_d_22"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"params file is empty"),
        ("- 1\n- 2\n", r"expected a mapping of sections"),
        ("train: {epochs: [\n", r"not valid YAML"),
        ("bogus: {}\n", r"unknown section 'bogus'"),
        ("train:\n  epoch: 3\n", r"unknown key 'train.epoch'"),
        ("train:\n  epochs: 0\n", r"train.epochs must be >= 1, got 0"),
        ("train:\n  epochs: three\n", r"train.epochs: expected an integer, got 'three'"),
        ("model:\n  dropout: 1.5\n", r"model.dropout must be in \[0, 1\), got 1.5"),
        ("model:\n  name: resnet9000\n", r"model.name: unknown model 'resnet9000'"),
        ("superpixels:\n  n_regions: -4\n", r"superpixels.n_regions must be >= 1, got -4"),
        ("superpixels:\n  method: felzenszwalb\n", r"superpixels.method must be one of"),
        ("train:\n  crop: [64]\n", r"train.crop: expected 2 values"),
        ("al:\n  pseudo_threshold: 1.5\n", r"al.pseudo_threshold must be in \[0, 1\], got 1.5"),
        ("al:\n  pseudo_chunks: -1\n", r"al.pseudo_chunks must be >= 0, got -1"),
    ],
)
def test_bad_params_name_file_and_key(tmp_path, text, message):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_config(str(p))
    if "YAML" not in message:
        assert str(p) in str(err.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.yaml: params file not found"):
        load_config(str(tmp_path / "nope.yaml"))
