"""The LitServe API: decode uploads, detect in batches of concurrent requests, answer JSON.

Requests that reach the API already carry one form, ``{"image": "<base64>"}`` (see
:mod:`lightning_yolo.serve.gate`). A picture that cannot be decoded is not raised as an error: LitServe answers a
whole batch with the error of any one of its requests, so it travels through the batch as a :class:`Rejected` and
only its own request gets the 422.

LitServe reads the annotations of ``decode_request`` and ``encode_response`` as the route's body and answer types,
so this module keeps them real types (no postponed annotations).
"""

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
from starlette.responses import JSONResponse

from lightning_yolo.predict.predictor import Predictor, PredictSettings, load_detector
from lightning_yolo.serve.detections import detections_json
from lightning_yolo.serve.payload import FIELD, PayloadError
from lightning_yolo.serve.uploads import decode_upload

__all__ = ["DetectionAPI", "Rejected"]


@dataclass
class Rejected:
    """A request whose picture cannot be used: the HTTP status and the reason to answer with."""

    status: int
    detail: str


Upload = np.ndarray | Rejected
"""A decoded ``(H, W, 3)`` BGR picture, or why there is none."""


class DetectionAPI(ls.LitAPI):
    """Detects objects in posted pictures with ``predict``'s predictor: the same letterbox, model, NMS and
    mapping back to the picture's pixels, so the answers equal ``predict``'s on the same files.

    Args:
        weights: official YOLOv5 ``.pt``, converted weights file or training ``.ckpt``.
        settings: inference settings (image size, thresholds, most detections).
        max_batch_size: most requests run in one forward pass.
        batch_timeout: seconds to wait for a batch to fill.
        api_path: the detection route.
        threads: CPU threads each worker's torch uses (0: torch's default, every core). With several workers, or
            a busy machine, fewer threads avoid cores spinning in each other's way.
    """

    def __init__(
        self,
        weights: str | Path,
        settings: PredictSettings,
        max_batch_size: int = 8,
        batch_timeout: float = 0.01,
        api_path: str = "/predict",
        threads: int = 0,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=api_path)
        self.weights = str(weights)
        self.settings = settings
        self.threads = threads

    def setup(self, device: str) -> None:
        """Load the model on the worker's device (LitServe calls this once in each inference worker)."""
        if self.threads:
            torch.set_num_threads(self.threads)
        self.predictor = Predictor(load_detector(self.weights, device), self.settings)
        self.names = self.predictor.detector.names

    def decode_request(self, request: dict[str, str]) -> Upload:
        """The picture of one request, or why it cannot be used."""
        try:
            return decode_upload(base64.b64decode(request[FIELD], validate=True))
        except PayloadError as err:
            return Rejected(err.status, err.detail)
        except (KeyError, TypeError, binascii.Error, ValueError) as err:  # only if the gate was bypassed
            return Rejected(400, f"expected JSON {{'{FIELD}': base64}}: {type(err).__name__}")

    def batch(self, inputs: list[Upload]) -> list[Upload]:
        """The batch stays a list: pictures of different sizes cannot be stacked before letterboxing."""
        return list(inputs)

    def predict(self, x: list[Upload] | Upload) -> list[dict[str, Any] | Rejected] | dict[str, Any] | Rejected:
        """Detections for a batch (a list) or, without batching, for one upload; rejected uploads pass through."""
        if isinstance(x, list):
            return self._detect(x)
        return self._detect([x])[0]

    def _detect(self, uploads: list[Upload]) -> list[dict[str, Any] | Rejected]:
        images = [u for u in uploads if not isinstance(u, Rejected)]
        found = iter(self.predictor(images) if images else [])
        return [u if isinstance(u, Rejected) else detections_json(next(found), self.names, u.shape) for u in uploads]

    def unbatch(self, output: list[dict[str, Any] | Rejected]) -> list[dict[str, Any] | Rejected]:
        """One answer per request, in the batch's order."""
        return list(output)

    def encode_response(self, output: dict[str, Any] | Rejected) -> Any:
        """The JSON answer (a dict), or a 4xx ``JSONResponse`` ``{"detail": reason}`` for a rejected picture."""
        if isinstance(output, Rejected):
            return JSONResponse({"detail": output.detail}, status_code=output.status)
        return output
