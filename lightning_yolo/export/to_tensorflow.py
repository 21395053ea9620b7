"""TensorFlow SavedModel and TFLite (float32, float16) through onnx2tf, run in a separate Python environment.

TensorFlow (2.19) needs ``numpy<2.2`` and its own protobuf, so it cannot share lightning_yolo's environment (numpy
2.x). The writers export a static float32 ONNX file, then run ``python -m onnx2tf`` with the interpreter named by
``LIGHTNING_YOLO_TF_PYTHON`` (or this one, if it can import tensorflow and onnx2tf). Set one up once::

    python3 -m venv ~/tfvenv
    ~/tfvenv/bin/pip install tensorflow tf_keras onnx2tf onnx onnxruntime onnx_graphsurgeon sng4onnx psutil \\
        ai_edge_litert onnxsim
    export LIGHTNING_YOLO_TF_PYTHON=~/tfvenv/bin/python

onnx2tf writes NHWC models: input ``images`` (bs, H, W, 3) RGB in [0, 1], output (bs, N, 5 + nc) as ONNX. The
metadata (:class:`~lightning_yolo.export.metadata.ExportMetadata`) is ``metadata.json`` in the SavedModel folder,
and for a ``.tflite`` file a ``<stem>.json`` beside it. A ``.tflite`` file runs in ``predict``/``validate`` with
``ai-edge-litert`` (which installs beside numpy 2); a SavedModel needs TensorFlow itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lightning_yolo.export.formats import ExportJob

__all__ = ["TF_PYTHON", "tensorflow_python", "unavailable", "write_saved_model", "write_tflite"]

TF_PYTHON = "LIGHTNING_YOLO_TF_PYTHON"
"""Environment variable naming a Python interpreter that has tensorflow and onnx2tf."""

SETUP = (
    "python3 -m venv ~/tfvenv && ~/tfvenv/bin/pip install tensorflow tf_keras onnx2tf onnx onnxruntime "
    f"onnx_graphsurgeon sng4onnx psutil ai_edge_litert onnxsim, then set {TF_PYTHON}=~/tfvenv/bin/python"
)
SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
"""The sample inputs onnx2tf checks its conversion on; it downloads them unless the file is in its working folder."""


def unavailable(what: str) -> str:
    """The message for a TensorFlow format when no TensorFlow interpreter is set up."""
    return (
        f"{what} needs tensorflow and onnx2tf, which cannot share this environment (tensorflow needs numpy<2.2): "
        f"{SETUP}"
    )


def tensorflow_python() -> str:
    """The interpreter that runs onnx2tf.

    Raises:
        ValueError: neither ``$LIGHTNING_YOLO_TF_PYTHON`` nor this interpreter has tensorflow and onnx2tf.
    """
    candidates = [os.environ.get(TF_PYTHON), sys.executable]
    for python in filter(None, candidates):
        probe = [python, "-c", "import onnx2tf, tensorflow"]
        try:
            if subprocess.run(probe, capture_output=True, timeout=300).returncode == 0:  # noqa: S603 (no shell)
                return python
        except (OSError, subprocess.TimeoutExpired):
            continue
    raise ValueError(unavailable("--format saved_model/tflite"))


def _sample_inputs(folder: Path) -> None:
    """Write onnx2tf's sample inputs (smooth gradients with noise, NHWC in [0, 1]) so it needs no download."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 128, dtype=np.float32)
    base = (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
    noise = rng.random((20, 128, 128, 3), dtype=np.float32) * 0.2
    np.save(folder / SAMPLE, np.clip(base * 0.8 + noise, 0, 1).astype(np.float32))


def _convert(job: ExportJob, folder: Path) -> Path:
    """Run onnx2tf on the job's float32 ONNX graph; returns its output folder (SavedModel + .tflite files)."""
    from lightning_yolo.export.to_onnx import write_onnx

    python = tensorflow_python()
    work = Path(tempfile.mkdtemp(prefix="tf_export_", dir=folder))
    float_job = dataclasses.replace(
        job, model=job.model.float(), example=job.example.float(), nms=False, half=False, dynamic=False, simplify=True
    )  # onnx2tf fails on the unslimmed graph's shape arithmetic ("Output tensors of a Functional model ...")
    write_onnx(float_job, work / "model.onnx")
    _sample_inputs(work)
    command = [python, "-m", "onnx2tf", "-i", "model.onnx", "-o", "out", "-osd", "-n"]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True)  # noqa: S603 (no shell)
    if done.returncode != 0 or not (work / "out" / "saved_model.pb").is_file():
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if "Error" in ln or "error" in ln]
        shutil.rmtree(work, ignore_errors=True)
        raise ValueError(f"onnx2tf failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
    return work


def _metadata(job: ExportJob) -> str:
    return json.dumps({k: json.loads(v) for k, v in job.metadata().to_strings().items()})


def write_saved_model(job: ExportJob, path: Path) -> Path:
    """A SavedModel folder ``<stem>_saved_model/`` with ``metadata.json``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    work = _convert(job, path.parent)
    shutil.rmtree(path, ignore_errors=True)
    shutil.move(str(work / "out"), str(path))
    for stray in path.glob("*.tflite"):
        stray.unlink()
    (path / "metadata.json").write_text(_metadata(job))
    shutil.rmtree(work, ignore_errors=True)
    return path


def write_tflite(job: ExportJob, path: Path) -> Path:
    """A ``.tflite`` file (float16 weights with ``job.half``) and its ``<stem>.json`` metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    work = _convert(job, path.parent)
    made = sorted((work / "out").glob(f"*_{'float16' if job.half else 'float32'}.tflite"))
    if not made:
        shutil.rmtree(work, ignore_errors=True)
        raise ValueError("onnx2tf wrote no .tflite file")
    shutil.move(str(made[0]), str(path))
    path.with_suffix(".json").write_text(_metadata(dataclasses.replace(job, half=False)))
    shutil.rmtree(work, ignore_errors=True)
    return path
