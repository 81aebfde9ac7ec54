"""Training: checkpoints round-trip, resume equals an uninterrupted run, learning happens."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.evaluation import evaluate_model
from alseg_core.metrics import mean_iou
from alseg_core.training import TrainConfig, items_from_samples, load_model, train


def _items(root, n=8):
    return items_from_samples(cityscapes.list_samples(str(root), "train")[:n])


def _train_drn(items, ckpt, cfg):
    return train(
        items, model_name="drn_d_22", checkpoint_url=ckpt, cfg=cfg, progress=False, log=None
    )


def _weights(url):
    return storage.load_checkpoint(url)["model_state"]


def test_checkpoint_round_trips_and_predicts_identically(synthetic_root, tmp_path):
    ckpt = str(tmp_path / "m.pt")
    cfg = TrainConfig(epochs=1, batch_size=4, seed=1)
    train(
        _items(synthetic_root), model_name="drn_d_22", checkpoint_url=ckpt, cfg=cfg, progress=False
    )
    state = storage.load_checkpoint(ckpt)
    assert state["model_name"] == "drn_d_22" and state["epoch"] == 1 and state["num_classes"] == 19
    model = load_model(ckpt).eval()
    again = load_model(ckpt).eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(x), again(x))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state["model_state"][key])


def test_resume_after_interruption_equals_uninterrupted_run(synthetic_root, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=4, seed=2)
    items = _items(synthetic_root, 6)
    full = str(tmp_path / "full.pt")
    train(items, model_name="drn_d_22", checkpoint_url=full, cfg=cfg, progress=False, log=None)
    cut = str(tmp_path / "cut.pt")
    first = train(
        items,
        model_name="drn_d_22",
        checkpoint_url=cut,
        cfg=cfg,
        progress=False,
        log=None,
        max_epochs_this_run=2,
    )
    # Unfinished work goes to <out>.partial, never to <out>: a half-trained model is never
    # mistaken for the result, and a pipeline that deletes <out> before a rerun resumes.
    assert first.epochs_run == 2 and not storage.exists(cut)
    assert storage.load_checkpoint(cut + ".partial")["epoch"] == 2
    second = train(
        items, model_name="drn_d_22", checkpoint_url=cut, cfg=cfg, progress=False, log=None
    )
    assert second.resumed_from_epoch == 2 and second.epochs_run == 1
    assert not storage.exists(cut + ".partial")
    assert storage.read_bytes(full) == storage.read_bytes(cut)  # byte-identical result
    a, b = _weights(full), _weights(cut)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    # A finished checkpoint is returned as is.
    third = train(
        items, model_name="drn_d_22", checkpoint_url=cut, cfg=cfg, progress=False, log=None
    )
    assert third.epochs_run == 0
    # ... but not for other training data: the checkpoint's run identity differs.
    fourth = train(
        items[:4], model_name="drn_d_22", checkpoint_url=cut, cfg=cfg, progress=False, log=None
    )
    assert fourth.epochs_run == 3 and fourth.resumed_from_epoch == 0


def test_training_on_partial_labels_ignores_unlabelled_pixels(synthetic_root, tmp_path):
    # All-ignore labels give no gradient: the weights stay what they were at init.
    sample = cityscapes.list_samples(str(synthetic_root), "train")[0]
    label_url = str(tmp_path / "lab.png")
    storage.write_png(label_url, np.full((64, 128), 255, np.uint8))
    from alseg_core.training import TrainItem

    items = [TrainItem(sample.image_id, sample.image_url, label_url, "train_ids")]
    ckpt = str(tmp_path / "p.pt")
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1, batch_size=1, seed=0, scale_range=None, hflip=False)
    train(items, model_name="drn_d_22", checkpoint_url=ckpt, cfg=cfg, progress=False, log=None)
    from alseg_core.models import build_model

    torch.manual_seed(cfg.seed)
    init = build_model("drn_d_22").state_dict()
    trained = _weights(ckpt)
    torch.testing.assert_close(
        trained["head.classifiers.0.weight"], init["head.classifiers.0.weight"]
    )


def test_checkpoint_of_another_model_or_class_count_is_refused(synthetic_root, tmp_path):
    ckpt = str(tmp_path / "m.pt")
    cfg = TrainConfig(epochs=1, batch_size=4)
    _train_drn(_items(synthetic_root, 4), ckpt, cfg)
    with pytest.raises(
        ValueError, match=r"m\.pt: checkpoint is for model 'drn_d_22', expected 'lraspp"
    ):
        load_model(ckpt, model_name="lraspp_mobilenet_v3_large")
    with pytest.raises(ValueError, match=r"m\.pt: checkpoint has 19 classes, expected 7"):
        load_model(ckpt, num_classes=7)
    storage.write_bytes(str(tmp_path / "junk.pt"), b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt: not a loadable alseg checkpoint"):
        load_model(str(tmp_path / "junk.pt"))


@pytest.mark.slow
def test_drn_d_22_beats_chance_after_a_few_epochs(synthetic_root, tmp_path):
    ckpt = str(tmp_path / "drn.pt")
    cfg = TrainConfig(epochs=12, batch_size=4, lr=2e-3, seed=0)
    _train_drn(_items(synthetic_root, 24), ckpt, cfg)
    val = cityscapes.list_samples(str(synthetic_root), "val")
    scores = evaluate_model(load_model(ckpt), val, batch_size=8)
    # Baselines on the same pixels: uniform random classes, and the majority class.
    targets = np.concatenate([cityscapes.read_label(s).ravel() for s in val])
    valid = targets[targets < 19]
    rng = np.random.default_rng(0)
    chance = mean_iou(targets, rng.integers(0, 19, targets.shape))
    majority = np.bincount(valid).max() / valid.size
    print(
        f"DRN-D-22, 24 images x 12 epochs: mIoU {scores.miou:.3f} (chance {chance:.3f}), "
        f"acc {scores.pixel_accuracy:.3f} (majority class {majority:.3f})"
    )
    assert scores.miou > 3 * chance
    assert scores.pixel_accuracy > majority + 0.2


def test_cpu_sums_are_the_same_call_after_call_once_alseg_core_is_imported():
    """MKL split a 1x1 convolution's input gradient at batch 1 over its threads in a
    run-dependent way (3 results in 300 identical calls on an Intel Xeon), so the same
    training gave other weights. Importing alseg_core asks MKL for strict reproducibility
    before its first call; a fresh process shows it (the setting is read once)."""
    import subprocess
    import sys

    code = (
        "import os, alseg_core, torch\n"
        "torch.manual_seed(0)\n"
        "w = torch.randn(240, 960, 1, 1) * 0.05\n"
        "x = torch.randn(1, 960, 1, 1, requires_grad=True)\n"
        "g = torch.randn(1, 240, 1, 1)\n"
        "seen = set()\n"
        "for _ in range(300):\n"
        "    x.grad = None\n"
        "    torch.nn.functional.conv2d(x, w).backward(g)\n"
        "    seen.add(x.grad.numpy().tobytes())\n"
        "print(os.environ['MKL_CBWR'], len(seen))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    setting, distinct = out.stdout.split()
    assert setting == "AUTO,STRICT"
    assert distinct == "1"


def _saved_epochs(monkeypatch) -> list[tuple[str, int]]:
    """Record every checkpoint write (its file name and epoch), then write it as usual."""
    saved: list[tuple[str, int]] = []
    real = storage.save_checkpoint

    def spy(url, state):
        saved.append((os.path.basename(url), state["epoch"]))
        return real(url, state)

    monkeypatch.setattr(storage, "save_checkpoint", spy)
    return saved


def test_resumable_checkpoint_is_written_first_last_and_then_by_the_clock(
    synthetic_root, tmp_path, monkeypatch
):
    items = _items(synthetic_root, 4)
    saved = _saved_epochs(monkeypatch)
    # A long interval: the first epoch (a crash then loses little) and the result only.
    cfg = TrainConfig(epochs=5, batch_size=4, seed=3, checkpoint_every_s=3600)
    lazy = str(tmp_path / "lazy.pt")
    train(items, model_name="drn_d_22", checkpoint_url=lazy, cfg=cfg, progress=False, log=None)
    assert saved == [("lazy.pt.partial", 1), ("lazy.pt", 5)]
    # A time slice ends with its last epoch written, whatever the clock says.
    saved.clear()
    cut = str(tmp_path / "cut.pt")
    train(items, model_name="drn_d_22", checkpoint_url=cut, cfg=cfg, progress=False, log=None,
          max_epochs_this_run=3)  # fmt: skip
    assert saved == [("cut.pt.partial", 1), ("cut.pt.partial", 3)]
    # Interval 0: every epoch, as before the setting existed.
    saved.clear()
    eager = str(tmp_path / "eager.pt")
    every = TrainConfig(epochs=5, batch_size=4, seed=3, checkpoint_every_s=0)
    train(items, model_name="drn_d_22", checkpoint_url=eager, cfg=every, progress=False, log=None)
    assert saved == [("eager.pt.partial", e) for e in (1, 2, 3, 4)] + [("eager.pt", 5)]
    # How often it writes is not part of the result: same run identity, same bytes.
    assert storage.read_bytes(lazy) == storage.read_bytes(eager)


def test_decode_cache_reads_each_file_once_and_changes_nothing(synthetic_root, tmp_path):
    import shutil

    from alseg_core.training import SegmentationTrainSet

    # Copies of 3 items, so the test can remove the files after a first pass.
    items = []
    for item in _items(synthetic_root, 3):
        image = shutil.copy(item.image_url, tmp_path / f"{item.image_id}.png")
        label = shutil.copy(item.label_url, tmp_path / f"{item.image_id}_label.png")
        items.append(type(item)(item.image_id, str(image), str(label), item.label_format))
    cached = SegmentationTrainSet(items, TrainConfig(seed=4))
    plain = SegmentationTrainSet(items, TrainConfig(seed=4, decode_cache_mb=0))
    first = [cached[i] for i in range(3)]
    for i in range(3):  # the same tensors as decoding every time
        torch.testing.assert_close(first[i][0], plain[i][0], rtol=0, atol=0)
        assert torch.equal(first[i][1], plain[i][1])
    for path in tmp_path.glob("*.png"):
        path.unlink()
    cached.epoch = plain.epoch = 1  # another epoch: other augmentations, same pixels
    again = cached[0]
    assert again[0].shape == first[0][0].shape and not torch.equal(again[0], first[0][0])
    with pytest.raises(FileNotFoundError):
        plain[0]  # without the cache the file is read again, and it is gone
    # The cached arrays are read-only: augmentations copy, they never edit the cache.
    image, label = cached.load(1)
    assert not image.flags.writeable and not label.flags.writeable
    assert len(cached._decoded) == 3 and len(plain._decoded) == 0
    # The budget is a bound: room for one and a half pairs keeps the first pair only.
    pair = image.nbytes + label.nbytes
    small = SegmentationTrainSet(items, TrainConfig(seed=4, decode_cache_mb=1.5 * pair / 2**20))
    small._decode = lambda i: (np.zeros((64, 128, 3), np.uint8), np.zeros((64, 128), np.uint8))
    assert pair == 64 * 128 * 4
    for i in range(3):
        small.load(i)
    assert list(small._decoded) == [0]
