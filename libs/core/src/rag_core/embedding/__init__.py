"""Embedders: one interface, the offline ONNX default and hosted providers."""
