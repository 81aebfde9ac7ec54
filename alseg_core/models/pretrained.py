"""Starting weights from a file: an ImageNet backbone, or any earlier model's trunk.

``model.pretrained`` (params.yaml) names a local path or URL; a model trained from
scratch (round 0, rounds without ``al.finetune``, the benchmark's ceiling) starts from
it instead of random weights. Nothing is downloaded: bring the file. What it may hold:

- an alseg checkpoint (``model_state``), e.g. a model trained on other data: its trunk,
  and its head where the shapes fit (another class count: the head starts fresh);
- a plain state dict, or one under ``state_dict`` / ``model``: keys of the whole model
  (``trunk.*``, ``head.*``) or of the trunk alone (DRN-D-22's ImageNet weights of the
  reference implementation fyu/drn, ``layer0.*`` ... ``layer8.*``);
- torchvision's MobileNetV3-Large ImageNet weights (``features.*``), whose feature
  layers are the LR-ASPP and DeepLabV3 trunks' ``backbone``.

Tensors whose name and shape match are copied; the rest of the file (an ImageNet
classifier) is left out. A file that fills less than half of the trunk's weights is
refused: it is for another model.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import torch

from alseg_core import storage
from alseg_core.models.base import SegmentationModel

#: At least this share of the trunk's weights (by element count) must come from the file.
MIN_TRUNK_SHARE = 0.5


@dataclass(frozen=True)
class PretrainedLoad:
    """What a file gave a model: tensors copied into the trunk and the head, and the
    share of the trunk's weights (elements) they make up."""

    url: str
    sha256: str  # of the file's bytes: the training run's identity names its start by it
    trunk_tensors: int
    head_tensors: int
    trunk_share: float
    left_out: int  # tensors of the file that fit nowhere (e.g. an ImageNet classifier)

    def summary(self) -> str:
        return (
            f"pretrained {self.url}: {self.trunk_tensors} trunk tensors "
            f"({100 * self.trunk_share:.0f} % of its weights), {self.head_tensors} head "
            f"tensors; {self.left_out} tensors of the file left out"
        )


def _state_dict(url: str, raw: bytes) -> dict[str, torch.Tensor]:
    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for bad files
        raise ValueError(f"{url}: model.pretrained is not a loadable weights file ({err})") from err
    for key in ("model_state", "state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not any(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{url}: model.pretrained holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _candidates(key: str) -> tuple[str, ...]:
    """The model keys a file's key may stand for, most literal first."""
    out = [key, f"trunk.{key}"]
    if key.startswith("features."):  # torchvision MobileNetV3 -> the trunks' backbone
        out.append("trunk.backbone." + key.removeprefix("features."))
    return tuple(out)


def load_pretrained(model: SegmentationModel, url: str) -> PretrainedLoad:
    """Copy the tensors of ``url`` that fit ``model`` (name and shape) into it."""
    raw = storage.read_bytes(url)  # read once (FileNotFoundError names the file)
    source = _state_dict(url, raw)
    target = model.state_dict()
    copied: dict[str, torch.Tensor] = {}
    left_out = 0
    for key, tensor in source.items():
        match = next(
            (c for c in _candidates(key) if c in target and target[c].shape == tensor.shape), None
        )
        if match is None or match in copied:
            left_out += 1
            continue
        copied[match] = tensor
    trunk = {k: v for k, v in target.items() if k.startswith("trunk.") and v.is_floating_point()}
    total = sum(v.numel() for v in trunk.values())
    filled = sum(copied[k].numel() for k in copied if k in trunk)
    share = filled / total if total else 0.0
    if share < MIN_TRUNK_SHARE:
        example = ", ".join(list(source)[:3])
        raise ValueError(
            f"{url}: model.pretrained fills {100 * share:.0f} % of the {model.name!r} trunk's "
            f"weights (at least {100 * MIN_TRUNK_SHARE:.0f} % expected): weights of another "
            f"model? Its first keys: {example}"
        )
    model.load_state_dict(copied, strict=False)
    return PretrainedLoad(
        url,
        hashlib.sha256(raw).hexdigest(),
        sum(k.startswith("trunk.") for k in copied),
        sum(k.startswith("head.") for k in copied),
        share,
        left_out,
    )
