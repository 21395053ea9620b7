"""Write ``tests/models/data/finetune_nc7_yolov5n.pt``: what YOLOv5's own code does when yolov5n.pt is fine-tuned
to a dataset with 7 classes at 320 px, the case where the detection head cannot be transferred.

Run it with YOLOv5's interpreter from an upstream checkout (it imports YOLOv5's ``models``, ``utils`` and ``train``)::

    cd /path/to/yolov5 && python /path/to/lightning_yolo/scripts/reference/finetune_nc7.py \\
        --weights /path/to/yolov5n.pt --out /path/to/lightning_yolo/tests/models/data/finetune_nc7_yolov5n.pt

What it records, following ``train.py``'s steps for ``--weights yolov5n.pt`` (no ``--cfg``), ``hyp.scratch-low``:

- the model built from the checkpoint's yaml for ``nc=7`` right after ``torch.manual_seed(0)``, with every
  checkpoint tensor of matching name and shape transferred (train.py's ``intersect_dicts``, anchors included):
  the names transferred and the detection head's tensors (new convs with their prior biases, transferred anchors);
- the loss gains train.py gives ``ComputeLoss`` for 3 levels, 7 classes and 320 px;
- one training-mode step on a seeded uint8 batch: the loss (times batch size), its box/obj/cls items, and the
  gradients of the head's convs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

NC, IMGSZ = 7, 320


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    sys.path.insert(0, str(Path.cwd()))
    import train  # YOLOv5's train.py: its intersect_dicts is the one the fine-tune uses
    from models.yolo import Model
    from utils.loss import ComputeLoss

    ckpt = torch.load(args.weights, map_location="cpu", weights_only=False)
    torch.manual_seed(0)
    model = Model(ckpt["model"].yaml, ch=3, nc=NC, anchors=None)
    csd = train.intersect_dicts(ckpt["model"].float().state_dict(), model.state_dict(), exclude=[])
    model.load_state_dict(csd, strict=False)
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("model.24.")}

    hyp = yaml.safe_load((Path.cwd() / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    nl = model.model[-1].nl
    hyp["box"] *= 3 / nl
    hyp["cls"] *= NC / 80 * 3 / nl
    hyp["obj"] *= (IMGSZ / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = 0.0
    model.hyp, model.nc = hyp, NC

    generator = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (2, 3, IMGSZ, IMGSZ), generator=generator, dtype=torch.uint8)
    targets = torch.tensor(
        [
            [0, 0, 0.50, 0.50, 0.30, 0.40],
            [0, 3, 0.20, 0.70, 0.10, 0.15],
            [0, 6, 0.80, 0.25, 0.35, 0.20],
            [1, 1, 0.40, 0.45, 0.60, 0.70],
            [1, 5, 0.90, 0.90, 0.05, 0.08],
            [1, 2, 0.15, 0.30, 0.20, 0.50],
        ]
    )
    model.train()
    loss, items = ComputeLoss(model)(model(img.float() / 255), targets)
    loss.backward()
    grads = {
        f"model.24.m.{i}.{kind}": getattr(conv, kind).grad.clone()
        for i, conv in enumerate(model.model[-1].m)
        for kind in ("weight", "bias")
    }
    torch.save(
        {
            "nc": NC,
            "imgsz": IMGSZ,
            "transferred": sorted(csd),
            "total": len(model.state_dict()),
            "head": head,
            "gains": {"box": hyp["box"], "cls": hyp["cls"], "obj": hyp["obj"]},
            "img": img,
            "targets": targets,
            "loss": loss.detach(),
            "loss_items": items.detach(),
            "grads": grads,
        },
        args.out,
    )
    print(f"transferred {len(csd)}/{len(model.state_dict())}, loss {loss.item():.6f}, items {items.tolist()}")


if __name__ == "__main__":
    main()
