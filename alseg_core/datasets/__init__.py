"""Cityscapes-format datasets: the label table, the reader, the synthetic generator."""
