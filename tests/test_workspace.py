"""One writer per workspace, cleanup after a killed writer, and idempotent re-runs.

Concurrency: a second ``alseg`` process on the same workspace is refused (exit 3) with a
message naming the holder, and writes nothing; the lock dies with its process, even by
SIGKILL; two ``dvc repro`` at once are refused by DVC's own lock. Idempotence:
delivering the same labels twice, re-running ``merge`` and re-running a finished round
change nothing and charge nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alseg_core.cli import main
from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic
from alseg_core.labels import load_state
from alseg_core.workspace import WorkspaceBusy, stale_temporaries, workspace_lock

BIN = Path(sys.executable).parent
PARAMS = """\
data: {root: data/cs}
superpixels: {n_regions: 20, compactness: 0.02, store: data/superpixels, workers: 1}
model: {name: drn_d_22}
train: {epochs: 40, batch_size: 2, device: cpu}
al: {initial_images: 2}
"""


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "params.yaml").write_text(PARAMS)
    monkeypatch.chdir(root)
    make_synthetic("data/cs", SyntheticSpec(n_train=6, n_val=1, height=48, width=96))
    return root


def _alseg(ws: Path, *argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "alseg"), "--params", str(ws / "params.yaml"), "--no-progress", *argv],
        cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


def _cli(ws: Path, *argv: str) -> int:
    return main(["--params", str(ws / "params.yaml"), "--no-progress", *argv])


def _wait_for_holder(ws: Path, proc: subprocess.Popen) -> str:
    lock = ws / ".alseg" / "lock"
    deadline = time.time() + 60
    while time.time() < deadline:
        text = lock.read_text() if lock.exists() else ""
        if f"pid {proc.pid}," in text:
            return text
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the first process never took the lock")


def test_second_process_is_refused_while_the_first_works(ws):
    # SIGINT at its default in the child: a suite started in the background by a
    # non-interactive shell has it ignored, and Python then installs no Ctrl-C handler.
    first = _alseg(ws, "train", "--out", "m.pt", "--limit", "4",
                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    holder = _wait_for_holder(ws, first)
    assert "alseg train" in holder
    second = _alseg(ws, "select", "--round", "0", "--out", "sel.json")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 3
    assert f"pid {first.pid}, alseg train" in err and "'alseg select' refused" in err
    assert not (ws / "sel.json").exists()
    # Ctrl-C ends the first (its 40 epochs would take a minute on 2 cores) ...
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=120)
    assert first.returncode == 130
    # ... and once it has ended, the same command goes through.
    again = _alseg(ws, "select", "--round", "0", "--out", "sel.json")
    again.communicate(timeout=60)
    assert again.returncode == 0 and (ws / "sel.json").exists()


def test_lock_dies_with_a_killed_process_and_its_temporaries_are_cleaned(ws):
    first = _alseg(ws, "train", "--out", "m.pt", "--limit", "4")
    _wait_for_holder(ws, first)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    # What a writer killed mid-write leaves: a temporary next to an output.
    (ws / ".sel.json.k1ll3d.tmp").write_text("half")
    (ws / "notes.k1ll3d.tmp").write_text("not ours")  # not a temporary of an output
    assert stale_temporaries([ws / "sel.json"]) == [ws / ".sel.json.k1ll3d.tmp"]
    assert _cli(ws, "select", "--round", "0", "--out", "sel.json") == 0
    assert not (ws / ".sel.json.k1ll3d.tmp").exists() and (ws / "notes.k1ll3d.tmp").exists()


def test_in_process_holder_blocks_the_cli(ws, capsys):
    with workspace_lock(ws, "run"):
        assert _cli(ws, "select", "--round", "0", "--out", "sel.json") == 3
        with pytest.raises(WorkspaceBusy, match=f"pid {os.getpid()}, alseg run"):
            with workspace_lock(ws, "merge"):
                pass
    assert "another alseg process is working on this workspace" in capsys.readouterr().err
    assert not (ws / "sel.json").exists()
    assert _cli(ws, "select", "--round", "0", "--out", "sel.json") == 0


def test_two_dvc_repro_at_once_one_is_refused(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(
        "stages:\n  slow:\n    cmd: python -c \"import time; open('started', 'w'); "
        "time.sleep(4); open('out.txt', 'w').write('done')\"\n    outs: [out.txt]\n"
    )
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=repo, check=True, env=env)
    run = lambda: subprocess.Popen(  # noqa: E731
        [str(BIN / "dvc"), "repro"], cwd=repo, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    a = run()
    deadline = time.time() + 60
    while not (repo / "started").exists():
        assert time.time() < deadline and a.poll() is None
        time.sleep(0.05)
    b = run()
    out_b = b.communicate(timeout=120)[0]
    out_a = a.communicate(timeout=120)[0]
    assert a.returncode == 0, out_a
    assert b.returncode != 0 and "lock" in out_b.lower(), out_b
    assert (repo / "out.txt").read_text() == "done"


# ----------------------------------------------------------------------------- idempotence


def _tree(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_same_labels_twice_and_merge_again_charge_nothing(ws, capsys):
    r0 = "data/rounds/r0"
    assert _cli(ws, "superpixels") == 0
    assert _cli(ws, "select", "--round", "0", "--out", f"{r0}/selection.json") == 0
    assert _cli(ws, "request", "--selection", f"{r0}/selection.json", "--out", f"{r0}/request") == 0
    assert _cli(ws, "annotate", "--request", f"{r0}/request", "--out", f"{r0}/delivery") == 0
    merge = ["merge", "--request", f"{r0}/request"]
    assert _cli(ws, *merge, "--delivery", f"{r0}/delivery", "--out", f"{r0}/labelled") == 0
    first = load_state(str(ws / r0 / "labelled"))
    assert first.total_cost > 0 and len(first.history) == 1
    capsys.readouterr()

    # Re-running merge (same inputs, same output) charges nothing and changes no byte.
    before = _tree(ws / r0 / "labelled")
    assert _cli(ws, *merge, "--delivery", f"{r0}/delivery", "--out", f"{r0}/labelled") == 0
    assert _tree(ws / r0 / "labelled") == before
    # Merging the same delivery into the set that already holds it: charged 0.
    argv = [*merge, "--delivery", f"{r0}/delivery", "--labelled", f"{r0}/labelled"]
    assert _cli(ws, *argv, "--out", "again") == 0
    assert "charged 0" in capsys.readouterr().out
    assert _tree(ws / "again") == before

    # A human delivery (masks only) merged twice: the second time is a no-op.
    inbox = ws / "inbox"
    inbox.mkdir()
    for png in (ws / r0 / "delivery").glob("*.png"):
        shutil.copy(png, inbox / png.name)
    argv = [*merge, "--delivery", "inbox"]
    assert _cli(ws, *argv, "--labelled", f"{r0}/labelled", "--out", "h1") == 0
    h1 = load_state(str(ws / "h1"))
    assert len(h1.history) == 2
    assert _cli(ws, *argv, "--labelled", "h1", "--out", "h2") == 0
    assert "charged 0" in capsys.readouterr().out.splitlines()[-1]
    assert _tree(ws / "h2") == _tree(ws / "h1")
    assert load_state(str(ws / "h2")).total_cost == h1.total_cost
