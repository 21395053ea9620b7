"""One dataset holding every bad case of RELIABILITY.md ("Bad dataset yaml", "Bad labels", "Bad images").

Each case is planted with the outcome it must have; the scan must report every one with its file name (and line
for label problems), the counts must equal the planted truth, loading must not crash, and the dataset folder must
be byte-for-byte and mtime-for-mtime unchanged afterwards.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from lightning_yolo.data import DatasetError, YOLODataModule
from lightning_yolo.data.images import MAX_IMAGE_PIXELS

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's, before ours

NAMES = ["a", "b", "c"]
BOX = "0 0.5 0.5 0.25 0.25\n"


@dataclass
class Planted:
    """What was planted in a split, and what the scan must say about it."""

    images: int = 0
    labelled: int = 0
    backgrounds: int = 0
    boxes: int = 0
    duplicates: int = 0
    corrupt: dict[str, str] = field(default_factory=dict)  # file name -> expected message part
    warnings: dict[str, str] = field(default_factory=dict)  # usable image -> expected message part


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(h: int = 32, w: int = 48, seed: int = 0) -> bytes:
    return cv2.imencode(".jpg", _rgb(h, w, seed))[1].tobytes()


def _pil(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _png_claiming_size(width: int, height: int) -> bytes:
    """A small valid PNG whose header is rewritten to claim ``width x height`` (a decompression bomb's header)."""
    data = bytearray(cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _exif_jpeg(orientation: int) -> bytes:
    image = Image.fromarray(_rgb(20, 40))
    exif = image.getexif()
    exif[0x0112] = orientation
    return _pil(image, "JPEG", exif=exif.tobytes())


class Builder:
    """Writes images and labels into one split of the dataset and records the expected outcome."""

    def __init__(self, root: Path, split: str) -> None:
        self.images, self.labels = root / "images" / split, root / "labels" / split
        self.images.mkdir(parents=True)
        self.labels.mkdir(parents=True)
        self.truth = Planted()

    def add(self, name: str, image: bytes, label: str | bytes | None, *, boxes: int = 0, dup: int = 0) -> None:
        (self.images / name).write_bytes(image)
        if label is not None:
            data = label.encode() if isinstance(label, str) else label
            (self.labels / (name.rsplit(".", 1)[0] + ".txt")).write_bytes(data)
        self.truth.images += 1
        self.truth.labelled += boxes > 0
        self.truth.backgrounds += boxes == 0
        self.truth.boxes += boxes
        self.truth.duplicates += dup

    def corrupt(self, name: str, image: bytes, label: str | bytes | None, expected: str) -> None:
        self.add(name, image, label)
        self.truth.backgrounds -= 1  # added as a background above; it is skipped instead
        self.truth.corrupt[name] = expected


def build_train(root: Path) -> Planted:
    b = Builder(root, "train")
    b.add("good1.jpg", _jpeg(seed=1), BOX + "1 0.2 0.3 0.1 0.1\n", boxes=2)
    b.add("good2.png", cv2.imencode(".png", _rgb(40, 30, 2))[1].tobytes(), BOX, boxes=1)
    b.add("dup.jpg", _jpeg(seed=3), BOX + BOX + "2 0.3 0.3 0.2 0.2\n", boxes=2, dup=1)
    b.add("bom_crlf.jpg", _jpeg(seed=4), "\ufeff0 0.5 0.5 0.2 0.2\r\n1 0.1 0.1 0.1 0.1\r\n", boxes=2)
    b.add("polygon.jpg", _jpeg(seed=5), "2 0.1 0.1 0.4 0.1 0.3 0.5\n", boxes=1)
    b.add("tolerance.jpg", _jpeg(seed=6), "0 1.0005 0.5 0.2 0.2\n", boxes=1)
    b.add("missing_label.jpg", _jpeg(seed=7), None)
    b.add("empty_label.jpg", _jpeg(seed=8), "\n")
    b.corrupt("columns.jpg", _jpeg(), BOX + "0 0.5 0.5 0.2\n", "columns.txt:2: expected 5 values")
    b.corrupt("text.jpg", _jpeg(), "0 0.5 0.5 one 0.2\n", "text.txt:1: not a number")
    b.corrupt("nan.jpg", _jpeg(), "0 nan 0.5 0.2 0.2\n", "nan.txt:1: NaN or infinite")
    b.corrupt("inf.jpg", _jpeg(), "0 0.5 0.5 0.2 -inf\n", "inf.txt:1: NaN or infinite")
    b.corrupt("negative.jpg", _jpeg(), "0 0.5 -0.5 0.2 0.2\n", "negative.txt:1: negative coordinate")
    b.corrupt("class_big.jpg", _jpeg(), BOX + BOX + "3 0.5 0.5 0.2 0.2\n", "class_big.txt:3: class id 3 >= nc (3)")
    b.corrupt("class_float.jpg", _jpeg(), "1.5 0.5 0.5 0.2 0.2\n", "class_float.txt:1: class id 1.5 is not")
    b.corrupt("outside.jpg", _jpeg(), "0 0.5 0.5 1.5 0.2\n", "outside.txt:1: coordinate 1.5 > 1")
    b.corrupt("zero_wh.jpg", _jpeg(), "0 0.5 0.5 0.2 0\n", "zero_wh.txt:1: zero width or height")
    b.corrupt("latin1.jpg", _jpeg(), "0 0.5 0.5 0.2 0.2 \xe9\n".encode("latin-1"), "latin1.txt: not UTF-8")
    b.corrupt("truncated.jpg", _jpeg(64, 64)[:-400], BOX, "truncated.jpg: truncated JPEG")
    b.corrupt("zero_bytes.jpg", b"", BOX, "zero_bytes.jpg: empty file")
    b.corrupt("text_named.jpg", b"this is not a JPEG\n", BOX, "text_named.jpg: not an image")
    b.corrupt("gif_named.png", _pil(Image.fromarray(_rgb(20, 20)), "GIF"), BOX, "unsupported image format GIF")
    b.corrupt("tiny.png", cv2.imencode(".png", _rgb(8, 30))[1].tobytes(), BOX, "tiny.png: image size 30x8")
    b.corrupt("bomb.png", _png_claiming_size(30000, 30000), BOX, "bomb.png: decompression bomb")
    b.corrupt("bomb_small.png", _png_claiming_size(10000, 9000), BOX, "bomb_small.png: decompression bomb")
    b.add("repairable.jpg", _jpeg(seed=9) + b"\x00trailing bytes", BOX, boxes=1)
    b.truth.warnings["repairable.jpg"] = "repaired in memory, file left unchanged"
    b.add("exif6.jpg", _exif_jpeg(6), BOX, boxes=1)
    b.add("grey.png", _pil(Image.fromarray(_rgb(20, 20)[..., 0]), "PNG"), BOX, boxes=1)
    b.add("rgba.png", _pil(Image.fromarray(np.dstack([_rgb(20, 20), _rgb(20, 20, 1)[..., :1]])), "PNG"), BOX, boxes=1)
    b.add("grey16.png", _pil(Image.fromarray(_rgb(20, 20)[..., 0].astype(np.uint16) * 257), "PNG"), BOX, boxes=1)
    b.add("cmyk.jpg", _pil(Image.fromarray(_rgb(20, 20)).convert("CMYK"), "JPEG"), BOX, boxes=1)
    b.truth.warnings["dup.jpg"] = "dup.txt: 1 duplicate label line removed"
    return b.truth


def build_val(root: Path) -> Planted:
    b = Builder(root, "val")
    b.add("val_good.jpg", _jpeg(seed=11), BOX, boxes=1)
    b.add("val_background.jpg", _jpeg(seed=12), None)
    b.corrupt("val_class.jpg", _jpeg(seed=13), BOX + "7 0.5 0.5 0.1 0.1\n", "val_class.txt:2: class id 7 >= nc (3)")
    return b.truth


@pytest.fixture
def bad_dataset(tmp_path: Path) -> tuple[Path, dict[str, Planted]]:
    """The bad dataset's yaml and the planted truth per split."""
    root = tmp_path / "bad"
    truth = {"train": build_train(root), "val": build_val(root)}
    yaml_path = root / "data.yaml"
    yaml_path.write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n", encoding="utf-8")
    return yaml_path, truth


def test_planted_bomb_headers_exceed_the_limit() -> None:
    assert 10000 * 9000 > MAX_IMAGE_PIXELS and 10000 * 9000 < 2 * MAX_IMAGE_PIXELS  # our check, not PIL's error


def test_every_bad_case_is_reported_counted_and_the_dataset_is_untouched(
    bad_dataset, folder_fingerprint, caplog
) -> None:
    yaml_path, truth = bad_dataset
    before = folder_fingerprint(yaml_path.parent)
    caplog.set_level(logging.INFO)
    dm = YOLODataModule(data=str(yaml_path), imgsz=64, batch_size=4, workers=0)
    dm.prepare_data()
    dm.setup("fit")
    for split, planted in truth.items():
        result = dm.scans[split]
        summary = result.summary
        found = (summary.images, summary.labelled, summary.backgrounds, summary.boxes, summary.duplicates)
        assert found == (planted.images, planted.labelled, planted.backgrounds, planted.boxes, planted.duplicates)
        assert summary.corrupt == len(planted.corrupt)
        for name, expected in {**planted.corrupt, **planted.warnings}.items():
            hits = [m for m in result.messages if expected in m and name.rsplit(".", 1)[0] in m]
            assert hits, f"{name}: no message containing {expected!r} in {result.messages}"
            assert any(hit in caplog.text for hit in hits)
        assert not set(planted.corrupt) & {Path(f).name for f in result.image_files}
    exif = dm.scans["train"].image_files.index(str(yaml_path.parent / "images" / "train" / "exif6.jpg"))
    assert dm.scans["train"].shapes[exif].tolist() == [40, 20]
    _load_everything(dm)
    assert folder_fingerprint(yaml_path.parent) == before


def _load_everything(dm: YOLODataModule) -> None:
    """Iterate a full training epoch and the whole validation set; check the batches."""
    seen = []
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for batch in loader:
            assert batch["img"].dtype == torch.uint8 and batch["img"].shape[1] == 3
            assert torch.isfinite(batch["targets"]).all()
            seen += batch["paths"]
    assert any(p.endswith("repairable.jpg") for p in seen)


def test_class_ids_above_nc_are_reported_in_train_and_val(bad_dataset) -> None:
    yaml_path, _ = bad_dataset
    dm = YOLODataModule(data=str(yaml_path), imgsz=64, batch_size=2, workers=0)
    dm.prepare_data()
    train_hits = [m for m in dm.scans["train"].messages if ">= nc" in m]
    val_hits = [m for m in dm.scans["val"].messages if ">= nc" in m]
    assert len(train_hits) == 1 and "labels/train/class_big.txt:3:" in train_hits[0]
    assert len(val_hits) == 1 and "labels/val/val_class.txt:2:" in val_hits[0]


def test_a_read_only_dataset_folder_scans_and_loads(bad_dataset, folder_fingerprint) -> None:
    yaml_path, truth = bad_dataset
    root = yaml_path.parent
    paths = [root, *root.rglob("*")]
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        before = folder_fingerprint(root)
        dm = YOLODataModule(data=str(yaml_path), imgsz=64, batch_size=4, workers=0, cache="disk")
        dm.setup("fit")
        assert dm.scans["train"].summary.corrupt == len(truth["train"].corrupt)
        _load_everything(dm)
        assert folder_fingerprint(root) == before
    finally:
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)


# ------------------------------------------------------------------------------------------------ bad yamls

YAML_CASES = {
    "missing train": ("val: images/val\nnames: [a, b, c]\n", "'train'"),
    "missing val": ("train: images/train\nnames: [a, b, c]\n", "'val'"),
    "missing names": ("train: images/train\nval: images/val\n", "'names'"),
    "nc mismatch": ("train: images/train\nval: images/val\nnc: 4\nnames: [a, b, c]\n", "'nc'"),
    "non-integer keys": ("train: images/train\nval: images/val\nnames: {a: x, b: y}\n", "'names'"),
    "train missing": ("train: images/nope\nval: images/val\nnames: [a]\n", "images/nope"),
    "python tag": ("train: !!python/object/apply:os.getcwd []\nval: images/val\nnames: [a]\n", "python"),
    "empty folder": ("train: images/train\nval: empty\nnames: [a, b, c]\n", "no images found"),
    "bad list line": ("train: list.txt\nval: images/val\nnames: [a, b, c]\n", "list.txt:2: image not found"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_bad_yaml_fails_before_training_naming_the_file(case: str, bad_dataset, folder_fingerprint) -> None:
    yaml_path, _ = bad_dataset
    root = yaml_path.parent
    (root / "empty").mkdir()
    (root / "list.txt").write_text("./images/train/good1.jpg\n./images/train/deleted.jpg\n")
    text, expected = YAML_CASES[case]
    bad_yaml = root / f"{case.replace(' ', '_')}.yaml"
    bad_yaml.write_text(text)
    before = folder_fingerprint(root)
    with pytest.raises(DatasetError) as err:
        dm = YOLODataModule(data=str(bad_yaml), imgsz=64, batch_size=2, workers=0)
        dm.setup("fit")  # listing problems (empty folder, list lines) surface here, before any batch
    assert expected in str(err.value)
    assert str(bad_yaml) in str(err.value) or str(root) in str(err.value)
    assert folder_fingerprint(root) == before


@pytest.mark.parametrize(
    "download",
    ["bash -c 'touch {m}'", "open('{m}', 'w').write('pwned')", "__import__('os').system('touch {m}')"],
)
def test_download_field_is_never_executed(download: str, bad_dataset, tmp_path: Path) -> None:
    yaml_path, _ = bad_dataset
    marker = tmp_path / "executed"
    text = yaml_path.read_text() + f'download: "{download.format(m=marker)}"\n'
    dl_yaml = yaml_path.with_name("download.yaml")
    dl_yaml.write_text(text)
    YOLODataModule(data=str(dl_yaml), imgsz=64, batch_size=2, workers=0).setup("fit")
    missing = yaml_path.with_name("download_missing.yaml")
    missing.write_text(text.replace("images/val", "images/not_downloaded"))
    with pytest.raises(DatasetError, match="not_downloaded"):
        YOLODataModule(data=str(missing), imgsz=64, batch_size=2, workers=0)
    assert not marker.exists()
