"""alseg: active learning for semantic segmentation."""
