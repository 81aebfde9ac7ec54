"""Shape conventions and small shared constants.

Every array in alseg follows one convention, documented here once:

- ``image``        : (H, W, 3) uint8, RGB
- ``label``        : (H, W) uint8 train ids in 0..NUM_CLASSES-1, IGNORE_INDEX elsewhere
- ``label_ids``    : (H, W) uint8 Cityscapes label ids (0..33)
- ``instance_ids`` : (H, W) int32 Cityscapes instance ids (label_id * 1000 + k for
                     classes with instances, label_id for the rest)
- ``region_map``   : (H, W) int32 superpixel ids in 0..n_regions-1
- ``images``       : (N, 3, H, W) float32 normalised tensor batch
- ``logits/probs`` : (N, C, H, W) float32
- ``pixel_scores`` : (N, H, W) float32, higher = more informative
- ``region_scores``: (n_regions,) float64 mean pixel score per region, NaN for none
- ``PixelStats``   : what a scorer sees (``alseg_core.active.scorers``): the deterministic
                     ``logits`` and the MC means ``mean_probs``, ``mean_sq_probs``
                     (N, C, H, W) and ``mean_entropy`` (N, H, W), torch tensors
- pool item        : (image id, region id); region -1 is the whole image
"""

from __future__ import annotations

IGNORE_INDEX: int = 255

NUM_CLASSES: int = 19

#: ImageNet statistics; models are trained from scratch but the normalisation keeps
#: inputs in a range that BatchNorm-initialised networks like.
IMAGE_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGE_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
