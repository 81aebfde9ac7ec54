"""Models: registry, trunk/head split, output stride, MC-dropout behaviour."""

from __future__ import annotations

import pytest
import torch

from alseg_core.models import MODEL_REGISTRY, build_model, register_model


@pytest.mark.parametrize("name", sorted(MODEL_REGISTRY))
def test_every_model_maps_images_to_full_size_logits(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5).eval()
    x = torch.randn(2, 3, 64, 96)
    feats = model.trunk(x)
    assert isinstance(feats, tuple)
    logits = model.head(feats, (64, 96))
    assert logits.shape == (2, 5, 64, 96)
    torch.testing.assert_close(logits, model(x))


def test_drn_d_22_has_output_stride_8_and_reference_depth():
    model = build_model("drn_d_22")
    (feat,) = model.trunk.eval()(torch.randn(1, 3, 64, 128))
    assert feat.shape == (1, 512, 8, 16)
    convs = [
        m
        for m in model.trunk.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert len(convs) == 20  # 22 layers = 7x7 stem + 20 3x3 convs + classifier
    dilations = sorted({m.dilation[0] for m in convs})
    assert dilations == [1, 2, 4]


def test_head_dropout_varies_and_trunk_stays_deterministic():
    torch.manual_seed(0)
    model = build_model("drn_d_22", dropout=0.5)
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        feats = model.trunk(x)
        again = model.trunk(x)
        a = model.head(feats, (32, 32), generator=g)
        b = model.head(feats, (32, 32), generator=g)
        torch.testing.assert_close(feats[0], again[0])
        assert not torch.allclose(a, b)  # MC mode: dropout active in the head, in eval mode
        torch.testing.assert_close(model.head(feats, (32, 32)), model.head(feats, (32, 32)))
        # Logits at feature resolution when no size is asked for.
        assert model.head(feats, None).shape[-2:] == feats[0].shape[-2:]


def test_unknown_model_name_is_an_error():
    with pytest.raises(ValueError, match=r"unknown model 'drn_d_99'; known models: \["):
        build_model("drn_d_99")


def test_registry_refuses_duplicate_names():
    with pytest.raises(ValueError, match="already registered"):
        register_model("drn_d_22")(lambda **kw: None)


def test_registry_is_open_to_user_models_without_a_second_list():
    from alseg_core.config import config_from_dict
    from alseg_core.models import DropoutHead, SegmentationModel

    with pytest.raises(ValueError, match="model.name: unknown model 'tiny_user_net'"):
        config_from_dict({"model": {"name": "tiny_user_net"}})

    @register_model("tiny_user_net")
    def tiny(*, num_classes: int, dropout: float) -> SegmentationModel:
        class Trunk(torch.nn.Module):
            def forward(self, x):
                return (torch.nn.functional.avg_pool2d(x, 4),)

        return SegmentationModel(
            "tiny_user_net", Trunk(), DropoutHead([3], num_classes, dropout=dropout), num_classes
        )

    try:
        assert config_from_dict({"model": {"name": "tiny_user_net"}}).model.name == "tiny_user_net"
        model = build_model("tiny_user_net", num_classes=4).eval()
        assert model(torch.randn(1, 3, 16, 16)).shape == (1, 4, 16, 16)
    finally:
        MODEL_REGISTRY.pop("tiny_user_net")


def test_checking_a_model_name_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from alseg_core.config import config_from_dict; "
        "config_from_dict({'model': {'name': 'drn_d_22'}, 'al': {'strategy': 'bald'}}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_dropout_is_an_error():
    with pytest.raises(ValueError, match="dropout"):
        build_model("drn_d_22", dropout=1.5)


def test_learning_loss_module_ranks_and_round_trips(tmp_path):
    from alseg_core.models.learning_loss import margin_ranking_loss

    # hand case: targets (3, 1) vs predictions (0, 5): wrong order -> relu(5 + 1) = 6
    loss = margin_ranking_loss(torch.tensor([0.0, 5.0]), torch.tensor([3.0, 1.0]))
    assert loss.item() == pytest.approx(6.0)
    right = margin_ranking_loss(torch.tensor([5.0, 0.0]), torch.tensor([3.0, 1.0]))
    assert right.item() == 0.0  # right order with margin > 1
    for name in ("drn_d_22", "lraspp_mobilenet_v3_large"):
        model = build_model(name, num_classes=3, learning_loss=True).eval()
        logits, predicted = model.forward_with_loss_prediction(torch.randn(2, 3, 64, 64))
        assert logits.shape == (2, 3, 64, 64) and predicted.shape == (2,)
    assert build_model("drn_d_22").loss_module is None


def _bit_masks(g: torch.Generator, n: int) -> torch.Tensor:
    """n keep-masks at p = 0.5 written out: one bit of the 64-bit draws each, low first."""
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 63) // 64,), generator=g)
    byte = words.view(torch.uint8)[: (n + 7) // 8].long()
    return ((byte.unsqueeze(1) >> torch.arange(8)) & 1).flatten()[:n].bool()


@pytest.mark.parametrize("dropout", [0.5, 0.3])
def test_head_mc_passes_are_dropout_of_the_features_through_the_classifier(dropout):
    """The batched MC head (mask buffers reused, the two LR-ASPP maps fused into one
    classifier over their concatenation, classifier as a matrix product, 1/keep folded
    into the weights) equals dropout written out: mask * feat / keep -> conv2d per map,
    summed, pass by pass, with the masks drawn from the same random bits (p = 0.5: one
    bit per mask; otherwise one byte, kept below 256 x keep); a reused workspace changes
    nothing."""
    torch.manual_seed(0)
    model = build_model("lraspp_mobilenet_v3_large", num_classes=5, dropout=dropout).eval()
    head = model.head
    keep_p = round(256 * (1 - dropout)) / 256
    with torch.no_grad():
        feats = model.trunk(torch.randn(2, 3, 64, 96))
        cat = torch.cat(feats, 1)
        work: dict = {}
        for passes in (3, 1):  # the buffers grown for 3 passes serve 1 pass after
            got = head(feats, None, generator=torch.Generator().manual_seed(7), passes=passes,
                       workspace=work)  # fmt: skip
            g = torch.Generator().manual_seed(7)
            n = cat.numel() * passes
            if dropout == 0.5:
                keep = _bit_masks(g, n)
            else:
                words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), generator=g)
                keep = words.view(torch.uint8)[:n] < round(256 * keep_p)
            dropped = (keep.view(passes, *cat.shape) * cat.unsqueeze(0) / keep_p).flatten(0, 1)
            expected, start = None, 0
            for feat, conv in zip(feats, head.classifiers, strict=True):
                part = dropped[:, start : start + feat.shape[1]]
                out = torch.nn.functional.conv2d(part, conv.weight, conv.bias)
                expected = out if expected is None else expected + out
                start += feat.shape[1]
            assert got.shape == (passes * 2, 5, *feats[0].shape[-2:])
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        # p = 0.5 keeps half the features; the buffers were reused, not regrown
        assert keep.float().mean().item() == pytest.approx(keep_p, abs=0.01)
        assert work["catwords"].numel() == ((cat.numel() * 3 + 63) // 64 if dropout == 0.5
                                            else (cat.numel() * 3 + 7) // 8)  # fmt: skip


def test_fused_head_concatenates_once_per_trunk_pass_and_never_reuses_stale_features():
    """The chunks of one trunk pass share one concatenation of the maps when the caller
    vouches that the features stay unchanged (``fixed_features``, as ``mc_statistics``
    does); other features of the same shape, or features not vouched for (changed in
    place), are concatenated again: each such call equals one with a fresh workspace."""
    torch.manual_seed(0)
    head = build_model("lraspp_mobilenet_v3_large", num_classes=3).eval().head
    work: dict = {}

    def both(feats):
        kept, fresh = (
            head(feats, None, generator=torch.Generator().manual_seed(1), passes=2, workspace=w)
            for w in (work, {})
        )  # fmt: skip
        return kept, fresh

    with torch.no_grad():
        first = (torch.randn(1, 40, 4, 6), torch.randn(1, 128, 4, 6))
        kept, fresh = both(first)
        assert torch.equal(kept, fresh)
        work["fixed_features"] = first
        assert torch.equal(both(first)[0], fresh)
        work["cat"].fill_(float("nan"))  # poison the kept concatenation
        again = head(first, None, generator=torch.Generator().manual_seed(1), passes=2,
                     workspace=work)  # fmt: skip
        assert torch.isnan(again).all()  # the same features: not concatenated again
        second = (torch.randn(1, 40, 4, 6), torch.randn(1, 128, 4, 6))  # same shapes
        kept, fresh = both(second)
        assert torch.equal(kept, fresh) and not torch.isnan(kept).any()
        before = kept
        second[1].mul_(-2.0)  # the same tensors changed in place, not vouched for
        kept, fresh = both(second)
        assert torch.equal(kept, fresh) and not torch.equal(kept, before)


def test_head_mc_passes_on_maps_of_two_resolutions_are_not_fused():
    """Maps at different resolutions keep one mask draw and classifier each, the second
    map's logits upsampled to the first's resolution (the unfused path)."""
    from alseg_core.models.base import DropoutHead

    torch.manual_seed(0)
    head = DropoutHead([4, 6], 3, dropout=0.5).eval()
    feats = (torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4))
    with torch.no_grad():
        got = head(feats, None, generator=torch.Generator().manual_seed(3), passes=2)
        g = torch.Generator().manual_seed(3)
        expected = None
        for feat, conv in zip(feats, head.classifiers, strict=True):
            n = feat.numel() * 2
            keep = _bit_masks(g, n)
            dropped = (keep.view(2, *feat.shape) * feat.unsqueeze(0) * 2.0).flatten(0, 1)
            out = torch.nn.functional.conv2d(dropped, conv.weight, conv.bias)
            out = torch.nn.functional.interpolate(out, size=(8, 8), mode="bilinear",
                                                  align_corners=False)  # fmt: skip
            expected = out if expected is None else expected + out
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_class_map_is_argmax_over_classes_first_of_equals():
    from alseg_core.models import class_map

    logits = torch.tensor([[[[1.0, 3.0]], [[2.0, 3.0]], [[2.0, 0.0]]]])  # (1, 3, 1, 2)
    assert class_map(logits).tolist() == [[[1, 0]]]  # ties -> the first class
    x = torch.randint(0, 4, (2, 19, 16, 24)).float()  # many ties
    assert torch.equal(class_map(x), x.argmax(1))
