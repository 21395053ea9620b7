"""NaN/inf loss or gradients: the step is skipped and counted, training stops after repeats, no bad checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pytorch_lightning import Callback, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from lightning_yolo.checkpoints.io import AtomicCheckpointIO
from lightning_yolo.errors import CheckpointError, NonFiniteError
from lightning_yolo.module import YOLOModule

BATCHES = 4


def _first(items: list[dict]) -> dict:
    return items[0]


def _loader() -> DataLoader:
    """Tiny fixed batches of 2 random 32 px images with one box each (the data module's batch format)."""
    gen = torch.Generator().manual_seed(0)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.4, 0.4], [1, 0, 0.3, 0.6, 0.2, 0.3]])
    batches = [
        {"img": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=gen), "targets": targets}
        for _ in range(BATCHES)
    ]
    return DataLoader(batches, batch_size=1, collate_fn=_first)


def _module() -> YOLOModule:
    torch.manual_seed(0)
    return YOLOModule(cfg="yolov5n.yaml", nc=1, imgsz=32, batch_size=2)


def _trainer(tmp_path: Path, epochs: int = 1, **kwargs) -> Trainer:
    return Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO()],
        **kwargs,
    )


def _nan_on(module: YOLOModule, steps: set[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loss NaN on the listed iterations (counted over the whole fit)."""
    real, calls = module.loss.forward, [0]

    def loss(preds, targets):
        total, items = real(preds, targets)
        calls[0] += 1
        return (total * float("nan"), items) if calls[0] - 1 in steps else (total, items)

    monkeypatch.setattr(module.loss, "forward", loss)


def _all_finite(module: YOLOModule) -> bool:
    return all(torch.isfinite(t).all() for t in module.state_dict().values() if t.is_floating_point())


def test_nan_loss_steps_are_skipped_and_counted(tmp_path: Path, monkeypatch, caplog) -> None:
    module = _module()
    _nan_on(module, {1, 2}, monkeypatch)
    with caplog.at_level("WARNING", logger="lightning_yolo"):
        _trainer(tmp_path, enable_checkpointing=False).fit(module, _loader())
    assert module.nonfinite_steps == 2
    assert caplog.text.count("non-finite loss at iteration") == 2
    assert _all_finite(module)


def test_repeated_nan_loss_stops_training_with_a_message(tmp_path: Path, monkeypatch) -> None:
    module = _module()
    _nan_on(module, set(range(1000)), monkeypatch)
    with pytest.raises(NonFiniteError, match="training stopped: 10 non-finite"):
        _trainer(tmp_path, epochs=5, enable_checkpointing=False).fit(module, _loader())
    assert _all_finite(module)


def test_infinite_gradient_from_a_finite_loss_skips_the_step(tmp_path: Path, caplog) -> None:
    module = _module()
    param = module.model.model[0].conv.weight
    param.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    before = {k: v.clone() for k, v in module.model.state_dict().items() if v.is_floating_point()}
    with caplog.at_level("WARNING", logger="lightning_yolo"):
        _trainer(tmp_path, enable_checkpointing=False).fit(module, _loader())
    assert 1 <= module.nonfinite_steps <= BATCHES  # every optimiser step of the fit was skipped (checked below)
    assert "non-finite gradient norm" in caplog.text
    after = module.model.state_dict()
    trained = [k for k in before if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before[k], after[k]) for k in trained)  # no parameter moved
    assert _all_finite(module)


class _PoisonAfterFirstEpoch(Callback):
    """Put a NaN into the EMA weights once the first epoch's checkpoint exists."""

    def on_train_epoch_end(self, trainer: Trainer, module: YOLOModule) -> None:
        if trainer.current_epoch == 1:
            with torch.no_grad():
                module.ema.module.model[0].conv.weight[0, 0, 0, 0] = float("nan")


def test_no_checkpoint_with_non_finite_weights_is_written(tmp_path: Path) -> None:
    module = _module()
    last = ModelCheckpoint(dirpath=tmp_path / "weights", filename="last", enable_version_counter=False)
    trainer = _trainer(tmp_path, epochs=2, callbacks=[_PoisonAfterFirstEpoch(), last])
    with pytest.raises(CheckpointError, match=r"last.ckpt: not saved, non-finite values in 1 weight tensors"):
        trainer.fit(module, _loader())
    saved = torch.load(tmp_path / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
