"""A YOLOv5 user's first commands: the architecture comes from --model.weights, a partly initialised model is not
validated silently, and the Python API loads any weights file in one call."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lightning_yolo.cli import main

COMMON = ["--data.workers=0", "--trainer.enable_progress_bar=false"]


def _weights(shared: Path) -> Path:
    return shared / "weights" / "yolov5n.pt"


def _coco128(shared: Path) -> Path:
    return shared / "data" / "coco128" / "coco128.yaml"


@pytest.mark.slow
def test_validate_takes_the_architecture_from_the_weights(shared: Path, tmp_path: Path, label_cache: Path, capsys):
    # ../shared/README.md: YOLOv5's val.py --weights yolov5n.pt --data coco128.yaml --img 640 (P R mAP50 mAP50-95)
    args = ["validate", f"--model.weights={_weights(shared)}", f"--data.data={_coco128(shared)}"]
    main([*args, "--data.imgsz=640", "--data.batch_size=16", f"--project={tmp_path}", *COMMON])
    all_row = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["all"])
    assert all_row.split()[1:] == ["128", "929", "0.626", "0.481", "0.545", "0.35"]


@pytest.mark.slow
def test_fit_from_official_weights_transfers_every_tensor(shared: Path, tmp_path: Path, label_cache: Path, caplog):
    args = ["fit", f"--model.weights={_weights(shared)}", f"--data.data={_coco128(shared)}", "--data.imgsz=64"]
    limits = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    with caplog.at_level(logging.INFO, logger="lightning_yolo"):
        main([*args, "--data.batch_size=4", *limits, f"--project={tmp_path}", "--noplots=true", *COMMON])
    assert "transferred 349/349 tensors" in caplog.text
    assert "summary: 214 layers, 1872157 parameters" in caplog.text  # YOLOv5 prints the same for yolov5n


def test_validate_refuses_a_partly_initialised_model(shared: Path, tmp_path: Path, label_cache: Path, capsys):
    args = ["validate", f"--model.weights={_weights(shared)}", "--model.cfg=yolov5s.yaml"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, f"--data.data={_coco128(shared)}", "--data.imgsz=64", f"--project={tmp_path}", *COMMON])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "only 61/349 tensors" in err and "--allow_partial_weights" in err
    assert not any((tmp_path).glob("exp*"))  # the failed start left no run folder


@pytest.mark.slow
def test_partly_initialised_validation_when_asked(shared: Path, tmp_path: Path, label_cache: Path) -> None:
    args = ["validate", f"--model.weights={_weights(shared)}", "--model.cfg=yolov5s.yaml", "--allow_partial_weights"]
    extra = ["--data.imgsz=64", "--trainer.limit_val_batches=1", f"--project={tmp_path}", *COMMON]
    main([*args, "true", f"--data.data={_coco128(shared)}", *extra])


def test_python_api_loads_any_weights_in_one_call(shared: Path, tmp_path: Path) -> None:
    import lightning_yolo

    model = lightning_yolo.load_model(_weights(shared))
    assert model.yaml["width_multiple"] == 0.25 and len(model.names) == 80 and model.names[0] == "person"
    module = lightning_yolo.YOLOModule.from_weights(_weights(shared), conf_thres=0.25)
    assert module.transferred == (349, 349) and module.names == model.names
    assert module.hparams.conf_thres == 0.25
