"""Evaluation of a detector: matching detections to labels (``matching``), average precision and fitness (``ap``),
the confusion matrix (``confusion``), the DDP-aware metrics a validation run accumulates (``metric``), the
results table val.py prints (``table``), its speed line (``speed``), and what val.py's output options need: COCO
JSON and the COCO evaluation (``coco``), YOLO label files (``label_files``) and hybrid label rows (``hybrid``).
"""
