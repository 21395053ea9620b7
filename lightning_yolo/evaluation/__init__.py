"""Evaluation of a detector: matching detections to labels (``matching``), average precision and fitness (``ap``),
the confusion matrix (``confusion``), the DDP-aware metrics a validation run accumulates (``metric``) and the
results table val.py prints (``table``).
"""
