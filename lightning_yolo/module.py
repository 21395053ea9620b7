"""The LightningModule: a YOLOv5 detection model, its loss, YOLOv5's optimisation recipe and validation metrics.

Optimisation is manual (``automatic_optimization = False``) because YOLOv5 accumulates gradients towards a nominal
batch of 64 images WITHOUT dividing the loss, with an accumulation count that itself ramps up during warmup. The
pieces live in :mod:`lightning_yolo.optim`; the hooks here call them:

- ``configure_optimizers``: three parameter groups, the decay scaled to the global batch, a per-epoch ``LambdaLR``.
- ``on_train_start``: the :class:`~lightning_yolo.optim.AccumulationSchedule` (the batches per epoch are known only
  now), restored from a resumed checkpoint's counters.
- ``training_step``: warmup of the lrs and momentum, forward, loss, backward (scaled under AMP); when the schedule
  says so: step (Lightning unscales first and calls ``on_before_optimizer_step``, which clips the gradient norm
  at ``max_grad_norm``), zero the gradients, update the EMA.
- ``on_train_epoch_end``: step the LR schedule, copy the model's attributes to the EMA.

Validation, checkpoints and exported weights use the EMA model.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_lightning import LightningModule

from lightning_yolo.checkpoints.files import check_state_dict_matches, read_checkpoint
from lightning_yolo.errors import CheckpointError, ConfigError, NonFiniteError
from lightning_yolo.evaluation.ap import APResult
from lightning_yolo.evaluation.hybrid import append_label_rows
from lightning_yolo.evaluation.metric import BatchMean, DetectionMetric
from lightning_yolo.evaluation.speed import StageTimes
from lightning_yolo.evaluation.table import format_results_table
from lightning_yolo.loss import YOLOLoss, scale_loss_gains
from lightning_yolo.models.ema import ModelEMA
from lightning_yolo.models.tta import augmented_forward
from lightning_yolo.models.weights import Weights, load_weights, transfer_state_dict
from lightning_yolo.models.yolo import DetectionModel
from lightning_yolo.ops.boxes import scale_boxes, xywh_to_xyxy
from lightning_yolo.ops.nms import non_max_suppression
from lightning_yolo.optim import (
    DECAY_GROUP,
    AccumulationSchedule,
    apply_warmup,
    build_optimizer,
    build_scheduler,
    lr_lambda,
    nominal_accumulate,
    scaled_weight_decay,
    warmup_iters,
)
from lightning_yolo.settings import MODEL_RULES, check_settings

log = logging.getLogger("lightning_yolo")

LOSS_NAMES = ("box_loss", "obj_loss", "cls_loss")


DEFAULT_CFG = "yolov5s.yaml"
"""The architecture when neither ``cfg`` nor ``weights`` says one (YOLOv5's ``train.py`` default)."""


def architecture(cfg: str | dict | None, weights: Weights | None) -> str | dict:
    """The architecture to build: ``cfg`` when given, else the one stored with ``weights``, else yolov5s."""
    if cfg is not None:
        return cfg
    return dict(weights.yaml) if weights is not None else DEFAULT_CFG


def weights_architecture(cfg: str | dict | None, weights: str | None) -> str | dict:
    """:func:`architecture` for a weights path, which may also name an exported model (its stored architecture)."""
    from lightning_yolo.export.backends import is_exported, load_backend

    if cfg is None and is_exported(weights):
        return load_backend(weights).meta.architecture or DEFAULT_CFG  # type: ignore[arg-type]
    return architecture(cfg, load_weights(weights) if cfg is None and weights else None)


class YOLOModule(LightningModule):
    """YOLOv5 detector trained with YOLOv5's recipe (hyp.scratch-low defaults).

    Args:
        cfg: Architecture: a shipped name (``yolov5n.yaml`` ... ``yolov5x6.yaml``), a path to a YOLOv5-format YAML,
            or the resolved architecture dict (what checkpoints store). Default: the architecture stored in
            ``weights`` (as YOLOv5's ``--weights yolov5n.pt``), else ``yolov5s.yaml``.
        weights: Initial weights: an official YOLOv5 ``.pt``, a converted weights file or a lightning_yolo
            checkpoint. Tensors whose name and shape match are transferred; the report says how many (all of
            them when the architecture comes from the file and nc is the file's). For ``validate`` / ``test``
            also an exported model (``.onnx``, ``.torchscript``, ``*_openvino_model/``, ``.tflite``, ...): its
            runtime then computes the predictions (see :mod:`lightning_yolo.export.backends`); there is no
            validation loss.
        nc: Number of classes (linked from the data module).
        names: Class names (linked from the data module).
        imgsz: Training image size in pixels (linked from the data module); scales the objectness gain.
        batch_size: Training batch size per device (linked from the data module); sets the accumulation.
        optimizer: ``SGD`` (nesterov), ``Adam`` or ``AdamW``.
        lr0: Initial learning rate.
        lrf: Final learning rate as a fraction of lr0.
        momentum: SGD momentum / Adam beta1.
        weight_decay: Weight decay for non-norm weights, before nominal-batch scaling.
        warmup_epochs: Warmup length in epochs (at least 100 iterations).
        warmup_momentum: Momentum at the start of warmup.
        warmup_bias_lr: Bias learning rate at the start of warmup.
        cos_lr: Cosine instead of linear learning-rate decay.
        nbs: Nominal batch size that gradients are accumulated towards.
        box: Box loss gain (before scaling by the number of levels).
        cls: Class loss gain (before scaling by nc and levels).
        cls_pw: Class BCE positive weight.
        obj: Objectness loss gain (before scaling by image size and levels).
        obj_pw: Objectness BCE positive weight.
        anchor_t: Anchor-to-target size ratio threshold for matching.
        fl_gamma: Focal loss gamma (0 disables focal loss).
        label_smoothing: Label smoothing epsilon.
        ema: Keep an exponential moving average of the weights for validation and saving.
        freeze: Layers to freeze, as YOLOv5's ``--freeze``: an integer N freezes the first N layers (10 is the
            backbone of the P5 models), a list names layer indices (``[0, 1, 2]``).
        multi_scale: Resize each training batch to a random size in 0.5-1.5x imgsz.
        max_grad_norm: Gradient-norm clipping threshold.
        conf_thres: Validation confidence threshold.
        iou_thres: Validation NMS IoU threshold.
        max_det: Maximum detections per image.
        augment: Test-time augmentation in validation and test (YOLOv5's ``val.py --augment``): passes at scales
            1, 0.83 (flipped left-right) and 0.67, merged before NMS. About 3x the inference time; training and
            the validation loss are unaffected.
        channels_last: Run the model on channels-last (NHWC) tensors. Convolutions are faster this way with
            oneDNN on CPUs (about 20% for yolov5n training) and with mixed precision on GPUs; the numbers agree
            with the default layout to float rounding. The loader already delivers channels-last batches.
        quad: The training batches come from YOLOv5's quad collate (linked from ``data.quad``): each image holds
            four, so the loss is scaled by 4 as YOLOv5 does.
    """

    def __init__(
        self,
        cfg: str | dict | None = None,
        weights: str | None = None,
        nc: int | None = None,
        names: list[str] | None = None,
        imgsz: int = 640,
        batch_size: int = 16,
        optimizer: str = "SGD",
        lr0: float = 0.01,
        lrf: float = 0.01,
        momentum: float = 0.937,
        weight_decay: float = 5e-4,
        warmup_epochs: float = 3.0,
        warmup_momentum: float = 0.8,
        warmup_bias_lr: float = 0.1,
        cos_lr: bool = False,
        nbs: int = 64,
        box: float = 0.05,
        cls: float = 0.5,
        cls_pw: float = 1.0,
        obj: float = 1.0,
        obj_pw: float = 1.0,
        anchor_t: float = 4.0,
        fl_gamma: float = 0.0,
        label_smoothing: float = 0.0,
        ema: bool = True,
        freeze: int | list[int] | None = None,
        multi_scale: bool = False,
        max_grad_norm: float = 10.0,
        conf_thres: float = 0.001,
        iou_thres: float = 0.6,
        max_det: int = 300,
        augment: bool = False,
        channels_last: bool = True,
        quad: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # before the model is built: a bad value fails fast, naming its key
        check_settings("model", self.hparams, MODEL_RULES)
        self.automatic_optimization = False
        self.transferred: tuple[int, int] | None = None
        """``(tensors transferred, tensors in the model)`` from ``weights``; None without initial weights."""
        self.backend: Any = None
        """The exported model that computes validation predictions when ``weights`` names one, else None."""
        self.model = self._build_model(cfg, weights, nc, names)
        self._freeze(list(range(freeze)) if isinstance(freeze, int) else list(freeze or []))
        if channels_last:
            self.model.to(memory_format=torch.channels_last)  # before the EMA copy, so both share the layout
        detect = self.model.model[-1]
        box_g, cls_g, obj_g = scale_loss_gains(box, cls, obj, nl=detect.nl, nc=detect.nc, imgsz=imgsz)
        self.loss = YOLOLoss(
            detect.anchors.clone(),
            detect.stride.clone(),
            detect.nc,
            box=box_g,
            obj=obj_g,
            cls=cls_g,
            cls_pw=cls_pw,
            obj_pw=obj_pw,
            anchor_t=anchor_t,
            fl_gamma=fl_gamma,
            label_smoothing=label_smoothing,
        )
        self.ema = ModelEMA(self.model) if ema else None
        self.val_metric = DetectionMetric(nc=detect.nc)
        self.val_loss = BatchMean(len(LOSS_NAMES))  # reduced over ranks at the epoch end only
        self.accumulation: AccumulationSchedule | None = None
        self._accumulation_state: dict[str, int] | None = None
        self.nonfinite_steps = 0
        self._running_loss = torch.zeros(3)
        self.last_results: dict[str, torch.Tensor] | None = None
        """The metrics of the latest validation or test (``DetectionMetric.compute``); None before the first."""
        self.hybrid_labels = False
        """Add the labels to the predictions before NMS (YOLOv5's ``--save-hybrid``; set by ``ValOutputs``)."""
        self.speed = StageTimes()
        """Pre-process, inference and NMS times of the current evaluation (YOLOv5's speed line)."""

    # ----------------------------------------------------------------------------------------------- construction
    def _build_model(
        self, cfg: str | dict | None, weights: str | None, nc: int | None, names: list[str] | None
    ) -> DetectionModel:
        """Build the architecture (``cfg``, else the one stored in ``weights``) for ``nc`` classes and transfer
        ``weights`` into it."""
        from lightning_yolo.export.backends import is_exported

        if is_exported(weights):
            return self._build_exported(cfg, str(weights), nc, names)
        initial = load_weights(weights) if weights else None
        model = DetectionModel(architecture(cfg, initial), nc=nc)
        if initial is not None:
            self.transferred = transfer_state_dict(model, initial.state_dict)
        if names is not None:
            model.names = list(names)
        elif initial is not None and len(initial.names) == model.model[-1].nc:
            model.names = list(initial.names)
        return model

    def _build_exported(
        self, cfg: str | dict | None, weights: str, nc: int | None, names: list[str] | None
    ) -> DetectionModel:
        """Load an exported model as the evaluation backend; the built model only supplies anchors and strides."""
        from lightning_yolo.export.backends import load_backend

        self.backend = load_backend(weights)
        file_nc = len(self.backend.names)
        if nc is not None and nc != file_nc:
            raise ConfigError(f"{weights}: the exported model has {file_nc} classes, the dataset {nc}")
        if self.hparams.augment:
            raise ConfigError(f"{weights}: --model.augment needs PyTorch weights, not an exported model")
        model = DetectionModel(cfg or self.backend.meta.architecture or DEFAULT_CFG, nc=file_nc)
        model.names = list(names) if names is not None else self.backend.names
        return model

    @classmethod
    def from_weights(cls, weights: str | Path, **kwargs: Any) -> YOLOModule:
        """A ready module from any weights file (official ``.pt``, converted file, training ``.ckpt``): its
        architecture, its class names and every tensor, with ``kwargs`` as further settings (``conf_thres``, ...).

        ``YOLOModule.from_weights("yolov5n.pt")`` is what ``validate --model.weights yolov5n.pt`` builds.
        """
        return cls(weights=str(weights), **kwargs)

    def _freeze(self, layers: list[int]) -> None:
        """Stop gradients for the listed layer indices (YOLOv5 ``--freeze``)."""
        prefixes = tuple(f"model.{i}." for i in layers)
        for name, param in self.model.named_parameters():
            if name.startswith(prefixes):
                param.requires_grad_(False)

    @property
    def names(self) -> list[str]:
        """Class names, index = class id."""
        return list(self.model.names)

    @property
    def last_curves(self) -> APResult | None:
        """P, R, F1 and PR curves of the latest validation; None when nothing was a true positive."""
        return self.val_metric.last_result

    @property
    def inference_model(self) -> DetectionModel:
        """The weights validation, checkpoints and export use: the EMA model when enabled."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def anchor_grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The Detect head's anchors ``(nl, na, 2)`` in grid units and strides ``(nl,)``."""
        detect = self.model.model[-1]
        return detect.anchors, detect.stride

    def set_anchors(self, anchors: torch.Tensor) -> None:
        """Write new anchors (nl, na, 2) in grid units to the model, its EMA copy and the loss."""
        targets = [self.model.model[-1].anchors, self.loss.anchors]
        if self.ema is not None:
            targets.append(self.ema.module.model[-1].anchors)
        for buffer in targets:
            buffer.copy_(anchors.to(buffer))

    # ----------------------------------------------------------------------------------------------- optimisation
    @property
    def global_batch_size(self) -> int:
        """Images per optimiser iteration over all devices (YOLOv5's ``--batch-size``)."""
        trainer = self._attached_trainer()
        return self.hparams.batch_size * (trainer.world_size if trainer is not None else 1)

    def _attached_trainer(self) -> Any:
        """The Trainer running this module, or None when it is used on its own (``trainer`` raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def _weight_decay(self) -> float:
        """The decay-group weight decay, scaled to the current global batch and its nominal-batch accumulation."""
        accumulate = nominal_accumulate(self.global_batch_size, self.hparams.nbs)
        return scaled_weight_decay(self.hparams.weight_decay, self.global_batch_size, accumulate, self.hparams.nbs)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = build_optimizer(self.model, hp.optimizer, hp.lr0, hp.momentum, self._weight_decay())
        scheduler = build_scheduler(optimizer, self._lr_lambda())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def _lr_lambda(self) -> Any:
        epochs = max(self.trainer.max_epochs or 1, 1)
        return lr_lambda(epochs, self.hparams.lrf, self.hparams.cos_lr)

    def on_fit_start(self) -> None:
        if self.trainer.is_global_zero:
            log.info(self.model.summary())  # YOLOv5's line: layers, parameters, GFLOPs at 640

    def on_train_start(self) -> None:
        # The number of batches per epoch is known only once the train loader exists; a resumed run's schedule
        # state (loaded earlier, in on_load_checkpoint) is applied to the schedule built from the current batch size.
        nw = warmup_iters(self.hparams.warmup_epochs, self.trainer.num_training_batches)
        self.accumulation = AccumulationSchedule(self.global_batch_size, nw, self.hparams.nbs)
        if self._accumulation_state is not None:
            self.accumulation.load_state_dict(self._accumulation_state)
        # A resumed optimiser carries the decay of the checkpoint's batch size; use the current global batch's.
        self.optimizers().optimizer.param_groups[DECAY_GROUP]["weight_decay"] = self._weight_decay()

    def on_train_epoch_start(self) -> None:
        self.optimizers().zero_grad()  # YOLOv5 drops a partial accumulation at each epoch start

    def _warmup(self, optimizer: torch.optim.Optimizer, ni: int) -> None:
        """Apply YOLOv5's per-iteration warmup of the learning rates and momentum."""
        hp = self.hparams
        apply_warmup(
            optimizer,
            ni,
            self.accumulation.warmup_iters,
            self.current_epoch,
            self._lr_lambda(),
            warmup_bias_lr=hp.warmup_bias_lr,
            momentum=hp.momentum,
            warmup_momentum=hp.warmup_momentum,
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Gradients are already unscaled here under AMP, as YOLOv5 does before clipping.
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.hparams.max_grad_norm)
        if not torch.isfinite(norm) and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            # A finite loss can still overflow in backward. A GradScaler skips such steps itself; without one,
            # clearing the gradients (to None) makes the optimiser leave every parameter untouched.
            self._skip_nonfinite(optimizer, self.global_step, what="gradient norm")

    # ----------------------------------------------------------------------------------------------- training
    def _preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float input of the model, randomly rescaled when multi-scale training is on."""
        x = self._to_float(img)
        if self.hparams.multi_scale and self.training:
            gs = int(self.model.stride.max())
            size = self.hparams.imgsz
            new = int(torch.randint(int(size * 0.5), int(size * 1.5) + gs, (1,)).item()) // gs * gs
            scale = new / max(x.shape[2:])
            if scale != 1:
                shape = [math.ceil(s * scale / gs) * gs for s in x.shape[2:]]
                x = F.interpolate(x, size=shape, mode="bilinear", align_corners=False)
        return x

    def _to_float(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float in [0, 1] in the model's memory layout (loader batches are channels-last)."""
        x = img.float() / 255
        layout = torch.channels_last if self.hparams.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=layout)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        ni = batch_idx + self.trainer.num_training_batches * self.current_epoch
        self._warmup(optimizer.optimizer, ni)
        loss, items = self.training_loss(batch)
        if not torch.isfinite(loss).all():
            self._skip_nonfinite(optimizer, ni)
            return loss.detach()
        self.manual_backward(loss)
        if self.accumulation.step_now(ni):
            optimizer.step()
            optimizer.zero_grad()
            if self.ema is not None:
                self.ema.update(self.model)
        bs = batch["img"].shape[0]
        for name, value in zip(LOSS_NAMES, items, strict=True):
            # every rank runs the same number of training batches: averaged over ranks once, at the epoch end
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        self._show_progress(items, batch, batch_idx)
        return loss.detach()

    def training_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """YOLOv5's training loss of a batch (not divided by the accumulation), and the ``(3,)`` box, obj, cls items.

        With ``quad`` the loss is scaled by 4, as YOLOv5 does: each quad image holds four training images.
        """
        preds = self.model(self._preprocess(batch["img"]))
        loss, items = self.loss(preds, batch["targets"])
        return (loss * 4.0 if self.hparams.quad else loss), items

    def _show_progress(self, items: torch.Tensor, batch: dict[str, Any], batch_idx: int) -> None:
        """YOLOv5's training columns in the progress bar: running-mean losses, instances, image size."""
        self._running_loss = items if batch_idx == 0 else (self._running_loss * batch_idx + items) / (batch_idx + 1)
        columns = dict(zip(("box", "obj", "cls"), self._running_loss.tolist(), strict=True))
        columns |= {"instances": float(batch["targets"].shape[0]), "size": float(batch["img"].shape[-1])}
        for name, value in columns.items():
            self.log(name, value, on_step=True, on_epoch=False, prog_bar=True, logger=False)

    def _skip_nonfinite(self, optimizer: Any, ni: int, what: str = "loss") -> None:
        """Drop a non-finite loss or gradient: no update, gradients cleared; stop after repeated failures."""
        self.nonfinite_steps += 1
        optimizer.zero_grad()
        log.warning("non-finite %s at iteration %d, step skipped (%d so far)", what, ni, self.nonfinite_steps)
        if self.nonfinite_steps >= 10:
            raise NonFiniteError(f"training stopped: {self.nonfinite_steps} non-finite loss or gradient values")

    def on_train_epoch_end(self) -> None:
        optimizer = self.optimizers().optimizer
        for i, group in enumerate(optimizer.param_groups):
            self.log(f"x/lr{i}", group["lr"], on_epoch=True)
        self.lr_schedulers().step()
        if self.ema is not None:
            self.ema.update_attr(self.model)

    # ----------------------------------------------------------------------------------------------- validation
    def _evaluate(self, batch: dict[str, Any]) -> dict[str, list[torch.Tensor]]:
        """Loss, NMS and metric update for one validation/test batch (boxes compared in original-image pixels).

        Returns the batch's detections ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]`` per image: ``detections`` in the
        batch image's pixels (for plotting callbacks), ``predictions`` in the original image's pixels (for
        ``ValOutputs``). Pre-processing, inference and NMS are timed for the speed line.
        """
        if batch["img"].shape[0] == 0:  # a DDP rank's placeholder batch when there are fewer batches than ranks
            return {"detections": [], "predictions": []}
        with self.speed.stage("pre-process", self.device):
            img = self._to_float(batch["img"])
        raw, decoded = self._infer(img)
        # an exported model gives no raw outputs, so no validation loss: logged as zeros
        items = self.loss(raw, batch["targets"])[1] if raw is not None else torch.zeros(len(LOSS_NAMES))
        self.val_loss.update(items)
        hp = self.hparams
        with self.speed.stage("NMS", self.device):
            if self.hybrid_labels:
                decoded = append_label_rows(decoded, batch["targets"], tuple(img.shape[2:]))
            detections = non_max_suppression(decoded, hp.conf_thres, hp.iou_thres, multi_label=True, max_det=hp.max_det)
        self.speed.count(img.shape)
        preds, labels = self._to_original_frame(detections, batch, img.shape[2:])
        self.val_metric.update(preds, labels)
        return {"detections": detections, "predictions": preds}

    def _infer(self, img: torch.Tensor) -> tuple[list[torch.Tensor] | None, torch.Tensor]:
        """Raw level outputs of the plain pass (for the loss; None for an exported model) and the decoded
        predictions (test-time augmented with ``augment``); only the pass(es) giving the predictions count as
        inference time."""
        if self.backend is not None:
            with self.speed.stage("inference", self.device):
                return None, self.backend(img)
        model = self.inference_model
        if self.hparams.augment:
            with self.speed.stage("inference", self.device):
                decoded = augmented_forward(model, img)
            return model.forward_raw(img), decoded  # the validation loss stays that of the plain pass
        with self.speed.stage("inference", self.device):
            raw = model.forward_raw(img)
            decoded = model.model[-1].decode(raw)
        return raw, decoded

    @staticmethod
    def _to_original_frame(
        detections: list[torch.Tensor], batch: dict[str, Any], shape: torch.Size
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Rescale detections and labels from the letterboxed batch image to each original image."""
        height, width = shape
        targets = batch["targets"]
        preds, labels = [], []
        for i, det in enumerate(detections):
            (h0, w0), ratio_pad = batch["shapes"][i]
            det = det.clone()
            scale_boxes((height, width), det[:, :4], (h0, w0), ratio_pad)
            t = targets[targets[:, 0] == i]
            boxes = xywh_to_xyxy(t[:, 2:6] * torch.tensor([width, height, width, height], device=t.device))
            scale_boxes((height, width), boxes, (h0, w0), ratio_pad)
            preds.append(det)
            labels.append(torch.cat([t[:, 1:2], boxes], dim=1))
        return preds, labels

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, list[torch.Tensor]]:
        return self._evaluate(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, list[torch.Tensor]]:
        return self._evaluate(batch)

    def _log_metrics(self) -> dict[str, torch.Tensor]:
        results = self.val_metric.compute()
        self.val_metric.reset()
        for name, value in zip(LOSS_NAMES, self.val_loss.compute(), strict=True):
            self.log(f"val/{name}", value)  # already reduced over ranks, like the metrics below
        self.val_loss.reset()
        names = {
            "precision": "metrics/precision",
            "recall": "metrics/recall",
            "map50": "metrics/mAP_0.5",
            "map": "metrics/mAP_0.5:0.95",
            "fitness": "fitness",
        }
        for key, name in names.items():
            self.log(name, results[key].float(), prog_bar=key in ("map50", "map"))
        return results

    def _end_evaluation(self) -> None:
        self.last_results = self._log_metrics()
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            full = self.trainer.state.fn != "fit"
            print(format_results_table(self.last_results, self.model.names, per_class=full))
            if full:  # YOLOv5 prints the speed line after val.py's table, not after training's validations
                print(self.speed.line(self.hparams.imgsz))
        self.speed.reset()

    def on_validation_epoch_end(self) -> None:
        self._end_evaluation()

    def on_test_epoch_end(self) -> None:
        self._end_evaluation()

    # ----------------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The checkpoint carries the architecture and names, so nothing else is needed to rebuild the model.
        hparams = checkpoint.setdefault("hyper_parameters", {})
        hparams["cfg"] = self.model.yaml
        hparams["weights"] = None
        hparams["nc"] = self.model.model[-1].nc
        hparams["names"] = list(self.model.names)
        if self.accumulation is not None:
            checkpoint["accumulation"] = self.accumulation.state_dict()
        checkpoint["nonfinite_steps"] = self.nonfinite_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning calls this before load_state_dict: a checkpoint of another architecture or nc fails here with
        # the file and the mismatched keys, for --ckpt_path and load_from_checkpoint alike.
        trainer = self._attached_trainer()
        source = trainer.ckpt_path if trainer is not None else None
        check_state_dict_matches(self.state_dict(), checkpoint, source)
        self._accumulation_state = checkpoint.get("accumulation")
        self.nonfinite_steps = int(checkpoint.get("nonfinite_steps", 0))

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> YOLOModule:
        """Lightning's loader, but always ``weights_only=True`` and every failure a CheckpointError naming the file.

        Lightning's default (``weights_only=None``) lets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turn the safe
        unpickler off, and forces it off for http URLs; a checkpoint never needs code to load.
        """
        read_checkpoint(checkpoint_path)  # missing, empty, garbage or hostile files fail here, naming the file
        try:
            return super().load_from_checkpoint(
                checkpoint_path, map_location, hparams_file, strict, weights_only=True, **kwargs
            )
        except CheckpointError as err:
            raise CheckpointError(str(err).replace("checkpoint:", f"{checkpoint_path}:", 1)) from None
