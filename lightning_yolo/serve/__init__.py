"""An HTTP endpoint for a detection model on LitServe (``python -m lightning_yolo serve``).

LitServe is an optional extra (``pip install -e '.[serve]'``): only :mod:`lightning_yolo.serve.api`,
:mod:`~lightning_yolo.serve.gate` and :func:`~lightning_yolo.serve.server.build_server` need it, and they import it
when used.
"""
