"""`alseg params fill`: an older params.yaml gets the keys this version's stages read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alseg_core.config import add_round, load_config
from alseg_core.pipeline.layout import stage_name
from alseg_core.pipeline.upgrade import fill_params, missing_params, stage_params

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NEW_KEYS = ("plateau_patience", "pseudo_threshold", "pseudo_chunks")


def _older_params(tmp_path: Path) -> tuple[Path, str]:
    """The repo's params.yaml as it was before the keys of NEW_KEYS existed."""
    text = (REPO_ROOT / "params.yaml").read_text()
    older = "".join(
        line for line in text.splitlines(keepends=True)
        if line.split(":", 1)[0].strip() not in NEW_KEYS
    )  # fmt: skip
    path = tmp_path / "params.yaml"
    path.write_text(older)
    return path, older


def test_fill_adds_the_missing_keys_at_their_defaults_and_keeps_every_other_line(tmp_path):
    path, older = _older_params(tmp_path)
    added = fill_params(str(path))
    assert added == {"al.plateau_patience": 1, "al.pseudo_threshold": 0.0, "al.pseudo_chunks": 2}
    text = path.read_text()
    new_lines = [line for line in text.splitlines() if line.split(":")[0].strip() in NEW_KEYS]
    assert new_lines == ["  plateau_patience: 1", "  pseudo_chunks: 2", "  pseudo_threshold: 0.0"]
    # every other line (comments included) as it was, in its order
    assert [line for line in text.splitlines() if line not in new_lines] == older.splitlines()
    cfg = load_config(str(path))
    assert (cfg.al.plateau_patience, cfg.al.pseudo_threshold, cfg.al.pseudo_chunks) == (1, 0.0, 2)
    # at the end of the al section, before the next one
    lines = text.splitlines()
    assert lines[lines.index("  pseudo_threshold: 0.0") + 1].startswith("compute:")
    assert fill_params(str(path)) == {} and path.read_text() == text  # nothing left to add


def test_fill_writes_whole_missing_sections_before_rounds(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "# my experiment\ndata: {root: /data/cs, pool_split: train, val_split: val}\n"
        "al:     # the loop\n  unit: image   # whole images\n  budget_per_round: 900\n"
        "\n# --- the rounds, last ---\nrounds:\n  r1: {prev: r0}\n"
    )
    added = fill_params(str(path))
    assert added["train"]["lr"] == 1e-3 and added["train"]["scale_range"] == (0.75, 1.25)
    assert added["al.plateau_patience"] == 1 and "al.unit" not in added
    assert "model" in added and "model.name" not in added  # the whole section, once
    cfg = load_config(str(path))
    assert cfg.al.unit == "image" and cfg.al.budget_per_round == 900  # kept
    assert cfg.data.root == "/data/cs" and cfg.train.scale_range == (0.75, 1.25)
    text = path.read_text()
    assert text.startswith("# my experiment\n") and "  unit: image   # whole images\n" in text
    assert "\nal:     # the loop\n  unit: image" in text  # its header as it was
    # al's new keys follow its last key, not the margin comment that opens the rounds
    lines = text.splitlines()
    assert lines[lines.index("  budget_per_round: 900") + 1].startswith("  ")
    assert lines[lines.index("# --- the rounds, last ---") + 1] == "rounds:"
    assert text.rstrip().endswith("rounds:\n  r1: {prev: r0}")
    assert add_round(str(path)).k == 2  # `alseg round add` still finds rounds last
    assert missing_params(yaml.safe_load(path.read_text())) == {}


def test_every_stage_param_has_a_default():
    # A key dvc.yaml lists that the config does not define would fail here, not at a
    # user's `alseg params fill`.
    missing = missing_params({})
    whole = {k for k in stage_params() if "." not in k}  # model, train: whole sections
    assert whole == {"model", "train"}
    assert set(missing) == {k for k in stage_params() if k.split(".")[0] not in whole} | whole
    assert missing["al.plateau_patience"] == 1 and missing["al.annotator"] == "oracle"
    assert missing["model"]["name"] == "lraspp_mobilenet_v3_large"


def test_a_flow_style_section_is_refused_and_the_file_left_as_it_was(tmp_path):
    path = tmp_path / "params.yaml"
    before = "al: {unit: superpixel, strategy: random}\n"
    path.write_text(before)
    with pytest.raises(ValueError, match=r"params\.yaml: section 'al' is in flow style") as err:
        fill_params(str(path))
    assert "al.plateau_patience" in str(err.value)
    assert path.read_text() == before


def test_dvc_runs_again_once_the_missing_keys_are_filled(tmp_path):
    # Real DVC with this version's dvc.yaml: a params.yaml without the newer keys stops
    # the seed round's train stage (its deps are there); after `alseg params fill` DVC
    # would run it (--dry: the command it would run, nothing run).
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text((REPO_ROOT / "dvc.yaml").read_text())
    _older_params(repo)
    stage = stage_name("train", 0)
    for dep in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"][stage]["deps"]:
        path = repo / dep
        folder = path if not path.suffix else path.parent
        folder.mkdir(parents=True, exist_ok=True)
        (path / "x" if not path.suffix else path).write_text("x")
    dry = [str(BIN / "dvc"), "repro", "--dry", "-s", stage]
    before = subprocess.run(dry, cwd=repo, capture_output=True, text=True)
    assert before.returncode != 0
    assert "are missing from 'params.yaml'" in before.stderr and "plateau_patience" in before.stderr
    filled = subprocess.run(
        [str(BIN / "alseg"), "--params", "params.yaml", "params", "fill"],
        cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    assert filled.returncode == 0, filled.stderr
    assert "added al.plateau_patience: 1 (its default)" in filled.stdout
    after = subprocess.run(dry, cwd=repo, capture_output=True, text=True)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "alseg step train --round r0" in after.stdout


def test_the_flow_names_the_fix_when_dvc_finds_params_missing(tmp_path):
    from tasks.pipeline import _run, _stream

    message = "ERROR: Parameters 'al.plateau_patience' are missing from 'params.yaml'."
    refuse = [sys.executable, "-c", f"import sys; sys.exit({message!r})"]
    for call in (
        lambda: _run(refuse, str(tmp_path)),
        lambda: _stream(refuse, str(tmp_path), print),
    ):
        with pytest.raises(RuntimeError, match=r"(?s)al\.plateau_patience.*`alseg params fill`"):
            call()
    other = [sys.executable, "-c", "import sys; sys.exit('ERROR: some other failure')"]
    with pytest.raises(RuntimeError) as err:
        _run(other, str(tmp_path))
    assert "alseg params fill" not in str(err.value)
