"""model.pretrained: starting weights from a file (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.models import build_model
from alseg_core.models.pretrained import load_pretrained
from alseg_core.training import TrainConfig, checkpoint_state, items_from_samples, train


def _save(obj, path) -> str:
    torch.save(obj, path)
    return str(path)


def test_a_trunk_state_dict_fills_the_trunk_and_leaves_the_head(tmp_path):
    # e.g. DRN-D-22's ImageNet weights of fyu/drn: the trunk's keys without "trunk."
    source = build_model("drn_d_22")
    trunk = {k.removeprefix("trunk."): v for k, v in source.state_dict().items()
             if k.startswith("trunk.")}  # fmt: skip
    trunk["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet classifier: left out
    url = _save(trunk, tmp_path / "drn_d_22-imagenet.pth")
    model = build_model("drn_d_22")
    head_before = model.head.state_dict()
    loaded = load_pretrained(model, url)
    for key, value in source.state_dict().items():
        if key.startswith("trunk."):
            torch.testing.assert_close(model.state_dict()[key], value)
    for key, value in model.head.state_dict().items():
        torch.testing.assert_close(value, head_before[key])  # the file has no head
    assert loaded.trunk_share == 1.0 and loaded.head_tensors == 0 and loaded.left_out == 1
    assert "100 % of its weights" in loaded.summary()


def test_torchvision_mobilenet_weights_fill_the_lraspp_backbone(tmp_path):
    # torchvision's ImageNet MobileNetV3-Large ("features.*", "classifier.*"), as a user
    # would bring it from their cache: its features are the LR-ASPP trunk's backbone.
    net = torchvision.models.mobilenet_v3_large(weights=None)
    url = _save(net.state_dict(), tmp_path / "mobilenet_v3_large-8738ca79.pth")
    model = build_model("lraspp_mobilenet_v3_large")
    loaded = load_pretrained(model, url)
    got = model.state_dict()
    for key, value in net.state_dict().items():
        if key.startswith("features."):
            ours = "trunk.backbone." + key.removeprefix("features.")
            torch.testing.assert_close(got[ours], value)
    classifier = [k for k in net.state_dict() if k.startswith("classifier.")]
    assert loaded.left_out == len(classifier) == 4
    # the LR-ASPP branch (cbr, scale) is not in an ImageNet backbone: it starts fresh
    assert 0.5 < loaded.trunk_share < 1.0


def test_an_alseg_checkpoint_of_another_class_count_gives_its_trunk_only(tmp_path):
    other = build_model("lraspp_mobilenet_v3_large", num_classes=5)
    url = _save(checkpoint_state(other, dropout=0.5, epoch=3), tmp_path / "other.pt")
    model = build_model("lraspp_mobilenet_v3_large", num_classes=19)
    loaded = load_pretrained(model, url)
    assert loaded.trunk_share == 1.0 and loaded.head_tensors == 0
    assert loaded.left_out == len(other.head.state_dict())  # 5-class classifiers don't fit
    key = "trunk.backbone.0.0.weight"
    torch.testing.assert_close(model.state_dict()[key], other.state_dict()[key])


def test_weights_of_another_model_are_refused_by_name(tmp_path):
    drn = build_model("drn_d_22")
    url = _save(checkpoint_state(drn, dropout=0.5, epoch=1), tmp_path / "drn.pt")
    model = build_model("lraspp_mobilenet_v3_large")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"drn\.pt: model\.pretrained fills 0 % of the "
                       r"'lraspp_mobilenet_v3_large' trunk"):  # fmt: skip
        load_pretrained(model, url)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])  # nothing copied
    (tmp_path / "junk.pth").write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match=r"junk\.pth: model\.pretrained is not a loadable"):
        load_pretrained(model, str(tmp_path / "junk.pth"))
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_pretrained(model, str(tmp_path / "missing.pth"))


def test_training_starts_from_the_pretrained_weights_and_keys_its_run_on_them(
    synthetic_root, tmp_path
):
    items = items_from_samples(cityscapes.list_samples(str(synthetic_root), "train")[:4])
    first = build_model("drn_d_22")
    a = _save(checkpoint_state(first, dropout=0.5, epoch=1), tmp_path / "a.pt")
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-9, seed=0, device="cpu")
    lines: list[str] = []
    out = str(tmp_path / "m.pt")
    train(items, model_name="drn_d_22", checkpoint_url=out, cfg=cfg, pretrained=a,
          progress=False, log=lines.append)  # fmt: skip
    trained = storage.load_checkpoint(out)["model_state"]
    key = "trunk.layer0.0.weight"
    # one step at lr 1e-9 from the file's weights: still (almost) the file's
    torch.testing.assert_close(trained[key], first.state_dict()[key], atol=1e-6, rtol=0)
    assert any(line.startswith(f"pretrained {a}: ") for line in lines)
    # other starting weights are another run: the finished checkpoint is not reused
    b = _save(checkpoint_state(build_model("drn_d_22"), dropout=0.5, epoch=1), tmp_path / "b.pt")
    again = train(items, model_name="drn_d_22", checkpoint_url=out, cfg=cfg, pretrained=b,
                  progress=False, log=None)  # fmt: skip
    assert again.epochs_run == 1
    same = train(items, model_name="drn_d_22", checkpoint_url=out, cfg=cfg, pretrained=b,
                 progress=False, log=None)  # fmt: skip
    assert same.epochs_run == 0  # the same file again: the finished run is returned


def test_model_pretrained_in_the_config_reaches_the_training(synthetic_root, tmp_path):
    from alseg_core.config import config_from_dict
    from alseg_core.pipeline.steps.train import train_on_split

    start = build_model("drn_d_22")
    url = _save(checkpoint_state(start, dropout=0.5, epoch=1), tmp_path / "start.pt")
    cfg = config_from_dict({"model": {"name": "drn_d_22", "pretrained": url}})
    assert cfg.model.pretrained == url
    samples = cityscapes.list_samples(str(synthetic_root), "train")[:4]
    out = str(tmp_path / "m.pt")
    schedule = TrainConfig(epochs=1, batch_size=4, lr=1e-9, seed=0, device="cpu")
    train_on_split(samples, out, model=cfg.model, train=schedule)
    key = "trunk.layer8.0.weight"
    got = storage.load_checkpoint(out)["model_state"][key]
    torch.testing.assert_close(got, start.state_dict()[key], atol=1e-6, rtol=0)
