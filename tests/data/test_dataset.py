"""YOLODataset: sample format, geometry back to the original image, caches, replaced images, augmentation."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lightning_yolo.data import image_cache
from lightning_yolo.data.config import DatasetError, list_images, load_dataset_config
from lightning_yolo.data.dataset import AugmentSettings, YOLODataset, collate
from lightning_yolo.data.mosaic import MosaicPlan
from lightning_yolo.data.samplers import rect_batches
from lightning_yolo.data.scan import ScanResult, scan_split

NO_COLOUR = AugmentSettings(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)


def scan_yaml(yaml_path: Path, split: str) -> ScanResult:
    config = load_dataset_config(yaml_path)
    files = list_images(config.splits[split], config.root)
    return scan_split(files, config.names, split=split, sources=config.splits[split], workers=0)


def test_coco128_scans_to_yolov5s_counts(shared: Path) -> None:
    result = scan_yaml(shared / "data" / "coco128" / "coco128.yaml", "train")
    s = result.summary
    assert (s.images, s.boxes, s.labelled, s.backgrounds, s.corrupt) == (128, 929, 126, 2, 0)
    assert len(result) == 128 and result.shapes.shape == (128, 2)


def test_validation_sample_maps_back_to_the_original_boxes(tiny_yaml: Path) -> None:
    scan = scan_yaml(tiny_yaml, "val")
    dataset = YOLODataset(scan, imgsz=96, augment=False)
    batches, shapes = rect_batches(dataset.shapes_hw, 2, 96, 32, 0.5)
    dataset.set_rect_shapes(batches, shapes)
    for i in range(len(dataset)):
        img, labels, path, ((h0, w0), ((rh, rw), (pw, ph))) = dataset[i]
        assert img.dtype == torch.uint8 and img.shape[0] == 3 and path == scan.image_files[i]
        assert list(img.shape[1:]) == dataset.target_shapes[i].tolist()
        H, W = img.shape[1:]
        x, y, w, h = labels[:, 2:].double().unbind(1)
        got = torch.stack(((x - w / 2) * W - pw, (y - h / 2) * H - ph, (x + w / 2) * W - pw, (y + h / 2) * H - ph), 1)
        got = got / torch.tensor([rw, rh, rw, rh], dtype=torch.float64)
        n = scan.labels[i].astype(np.float64)  # independent: original pixel corners from the label file
        want = np.stack([(n[:, 1] - n[:, 3] / 2) * w0, (n[:, 2] - n[:, 4] / 2) * h0, (n[:, 1] + n[:, 3] / 2) * w0,
                         (n[:, 2] + n[:, 4] / 2) * h0], 1)  # fmt: skip
        np.testing.assert_allclose(got.numpy(), want, atol=0.02)
        np.testing.assert_array_equal(labels[:, 1].numpy(), scan.labels[i][:, 0])


def test_image_pixels_are_rgb_chw(tiny_yaml: Path) -> None:
    scan = scan_yaml(tiny_yaml, "val")
    dataset = YOLODataset(scan, imgsz=256, augment=False)
    img, _, path, ((h0, w0), _) = dataset[0]
    original = cv2.imread(path)
    assert (h0, w0) == original.shape[:2] and max(h0, w0) == 256  # no resize at imgsz = long side
    top, left = (256 - h0) // 2, (256 - w0) // 2
    crop = img[:, top : top + h0, left : left + w0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(crop, original[..., ::-1])


@pytest.mark.parametrize("cache", ["ram", "disk"])
def test_caches_give_identical_samples_and_write_only_the_cache_folder(
    tiny_yaml: Path, cache: str, cache_folder: Path, folder_fingerprint
) -> None:
    before = folder_fingerprint(tiny_yaml.parent)
    scan = scan_yaml(tiny_yaml, "train")
    plain = YOLODataset(scan, imgsz=64, augment=True, albumentations=False)
    cached = YOLODataset(scan, imgsz=64, augment=True, albumentations=False, cache=cache, workers=2)
    for key in [(i, e) for i in range(len(scan)) for e in (0, 1)]:
        a, b = plain[key], cached[key]
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    if cache == "disk":
        npy = list((cache_folder / "images").glob("*.npy"))
        assert len(npy) == len(scan)
        assert np.load(npy[0], allow_pickle=False).dtype == np.uint8
    assert folder_fingerprint(tiny_yaml.parent) == before


def test_ram_cache_that_does_not_fit_warns_and_falls_back(tiny_yaml: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(image_cache, "available_memory_bytes", lambda: 1000)
    caplog.set_level(logging.WARNING)
    dataset = YOLODataset(scan_yaml(tiny_yaml, "val"), imgsz=64, cache="ram")
    assert dataset._ram is None
    assert "cache='ram' needs" in caplog.text and "read from disk instead" in caplog.text
    assert dataset[0][0].shape[0] == 3


def test_image_deleted_after_the_scan_is_replaced_and_counted(tiny_yaml: Path, caplog) -> None:
    scan = scan_yaml(tiny_yaml, "train")
    dataset = YOLODataset(scan, imgsz=64, augment=False)
    gone = Path(scan.image_files[2])
    gone.unlink()
    caplog.set_level(logging.WARNING)
    img, labels, path, _ = dataset[2]
    assert path != str(gone) and img.shape == (3, 64, 64)
    assert str(gone) in caplog.text and "using other images instead" in caplog.text
    assert int(dataset.load_failures) == 1
    mosaic = YOLODataset(scan, imgsz=64, augment=True, albumentations=False)
    for key in range(len(scan)):  # mosaics drawing the deleted image carry on too
        assert mosaic[key][0].shape == (3, 64, 64)


def test_all_images_gone_is_a_clear_error_not_a_hang(tiny_yaml: Path) -> None:
    scan = scan_yaml(tiny_yaml, "val")
    dataset = YOLODataset(scan, imgsz=64)
    for f in scan.image_files:
        Path(f).unlink()
    with pytest.raises(DatasetError, match="unreadable images in a row"):
        dataset[0]


def test_training_samples_are_valid_and_seeded_by_epoch_and_index(tiny_yaml: Path) -> None:
    dataset = YOLODataset(scan_yaml(tiny_yaml, "train"), imgsz=96, augment=True, seed=5)
    for i in range(len(dataset)):
        img, labels, _, shapes = dataset[(i, 0)]
        assert img.shape == (3, 96, 96) and shapes is None  # mosaic = 1.0
        if len(labels):
            assert (labels[:, 2:] >= 0).all() and (labels[:, 2:] <= 1).all() and (labels[:, 4:] > 0).all()
            assert set(labels[:, 1].tolist()) <= {0.0, 1.0, 2.0, 3.0}
    torch.testing.assert_close(dataset[(3, 1)][0], dataset[(3, 1)][0], rtol=0, atol=0)
    assert not torch.equal(dataset[(3, 1)][0], dataset[(3, 2)][0])
    dataset.set_epoch(2)
    torch.testing.assert_close(dataset[3][0], dataset[(3, 2)][0], rtol=0, atol=0)


def test_close_mosaic_epoch_turns_mosaic_off(tiny_yaml: Path) -> None:
    dataset = YOLODataset(scan_yaml(tiny_yaml, "train"), imgsz=64, augment=True)
    dataset.close_mosaic_epoch = 3
    assert all(dataset[(i, 2)][3] is None for i in range(4))
    assert all(dataset[(i, 3)][3] is not None for i in range(4))
    assert dataset.mosaic_active(2) and not dataset.mosaic_active(3)


def test_single_class_merges_every_class(tiny_yaml: Path) -> None:
    dataset = YOLODataset(scan_yaml(tiny_yaml, "train"), imgsz=64, single_cls=True)
    classes = torch.cat([dataset[i][1][:, 1] for i in range(len(dataset))])
    assert len(classes) and (classes == 0).all()


def test_collate_builds_the_batch_dict(tiny_yaml: Path) -> None:
    dataset = YOLODataset(scan_yaml(tiny_yaml, "train"), imgsz=64, augment=True)
    samples = [dataset[(i, 0)] for i in range(4)]
    batch = collate(samples)
    assert batch["img"].shape == (4, 3, 64, 64) and batch["img"].dtype == torch.uint8
    # the model's layout, filled without a transposing copy: each pixel's 3 channels are adjacent in memory
    assert batch["img"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch["img"], torch.stack([s[0] for s in samples]))
    assert batch["targets"].dtype == torch.float32 and batch["targets"].shape[1] == 6
    counts = [len(s[1]) for s in samples]
    assert batch["targets"][:, 0].tolist() == [float(i) for i, n in enumerate(counts) for _ in range(n)]
    assert batch["paths"] == [s[2] for s in samples] and len(batch["shapes"]) == 4
    assert all((s[1][:, 0] == 0).all() for s in samples)  # collate does not modify the samples


@pytest.fixture
def white_boxes(tmp_path: Path, write_yaml) -> Path:
    """Black images with two white filled rectangles (one per half) exactly where the labels say."""
    rng = np.random.default_rng(0)
    root = tmp_path / "wb"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for i in range(6):
        h, w = int(rng.integers(60, 120)), int(rng.integers(60, 120))
        img, lines, half = np.zeros((h, w, 3), np.uint8), [], w // 2
        for k in range(2):
            x1, x2 = k * half + int(rng.integers(0, half // 3)), k * half + int(rng.integers(2 * half // 3, half))
            y1, y2 = int(rng.integers(0, h // 3)), int(rng.integers(2 * h // 3, h))
            img[y1:y2, x1:x2] = 255
            lines.append(f"{k} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}\n")
        cv2.imwrite(str(root / "images" / "train" / f"{i}.png"), img)
        (root / "labels" / "train" / f"{i}.txt").write_text("".join(lines))
    return write_yaml(root / "d.yaml", "train: images/train\nval: images/train\nnames: [a, b]\n")


@pytest.mark.parametrize("fast_warp", [True, False])
@pytest.mark.parametrize("settings", [NO_COLOUR, AugmentSettings(hsv_h=0, hsv_s=0, hsv_v=0, mosaic=0.0, flipud=0.5)])
def test_augmented_boxes_sit_on_the_objects(white_boxes: Path, settings: AugmentSettings, fast_warp: bool) -> None:
    scan = scan_yaml(white_boxes, "train")
    dataset = YOLODataset(scan, imgsz=128, augment=True, hyp=settings, albumentations=False, fast_warp=fast_warp)
    checked = 0
    for key in [(i, e) for i in range(len(dataset)) for e in range(4)]:
        img, labels, _, _ = dataset[key]
        white = img[0] > 128
        for _, _, x, y, w, h in labels.tolist():
            x1, y1, x2, y2 = (round(v * 128) for v in (x - w / 2, y - h / 2, x + w / 2, y + h / 2))
            if x2 - x1 < 5 or y2 - y1 < 5:
                continue
            inside = white[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].float().mean()  # interpolation may blur an edge pixel
            assert inside > 0.95, (key, x1, y1, x2, y2)  # the box is on the object
            ring = white[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2]
            band, band_size = ring.sum() - white[y1:y2, x1:x2].sum(), ring.numel() - (y2 - y1) * (x2 - x1)
            assert band <= 0.5 * band_size, (key, x1, y1, x2, y2)  # and tight: little object outside it
            checked += 1
    assert checked > 20


@pytest.fixture
def large_jpegs(tmp_path: Path, write_yaml) -> Path:
    """Smooth 400x300 JPEG photos-to-be (a white box on a gradient), labelled, much larger than imgsz 96."""
    root = tmp_path / "large"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    yy, xx = np.mgrid[0:300, 0:400]
    for i in range(4):
        img = np.dstack([(xx * 0.5 + i * 20) % 256, (yy * 0.7) % 256, (xx + yy) * 0.3 % 256]).astype(np.uint8)
        img[60 + 10 * i : 240, 80 : 320 - 10 * i] = 255
        cv2.imwrite(str(root / "images" / "train" / f"{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        x1, y1, x2, y2 = 80, 60 + 10 * i, 320 - 10 * i, 240
        line = f"0 {(x1 + x2) / 800} {(y1 + y2) / 600} {(x2 - x1) / 400} {(y2 - y1) / 300}\n"
        (root / "labels" / "train" / f"{i}.txt").write_text(line)
    return write_yaml(root / "d.yaml", "train: images/train\nval: images/train\nnames: [box]\n")


def test_fast_decode_gives_the_full_decode_size_and_nearly_its_pixels(large_jpegs: Path) -> None:
    scan = scan_yaml(large_jpegs, "train")
    fast = YOLODataset(scan, imgsz=96, augment=True, fast_decode=True)
    full = YOLODataset(scan, imgsz=96, augment=True, fast_decode=False)
    for i in range(len(scan)):
        a, hw0, hw = fast.load_resized(i)
        b, hw0_full, hw_full = full.load_resized(i)
        assert (hw0, hw) == (hw0_full, hw_full) == ((300, 400), (72, 96))  # a 1/4-scale decode, then resized
        # libjpeg's DCT-domain shrink is an area-like average: close to the bilinear one away from edges
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4


def test_fast_decode_never_changes_evaluation_samples(large_jpegs: Path) -> None:
    scan = scan_yaml(large_jpegs, "val")
    on = YOLODataset(scan, imgsz=96, augment=False, fast_decode=True)
    off = YOLODataset(scan, imgsz=96, augment=False, fast_decode=False)
    for i in range(len(scan)):
        torch.testing.assert_close(on[i][0], off[i][0], rtol=0, atol=0)


def test_fast_decode_training_boxes_sit_on_the_objects(large_jpegs: Path) -> None:
    hyp = AugmentSettings(hsv_h=0, hsv_s=0, hsv_v=0, mosaic=0.0, translate=0.0, scale=0.0, fliplr=0.5)
    dataset = YOLODataset(scan_yaml(large_jpegs, "train"), imgsz=96, augment=True, hyp=hyp, albumentations=False)
    for key in [(i, e) for i in range(len(dataset)) for e in range(2)]:
        img, labels, _, _ = dataset[key]
        (_, _, x, y, w, h) = labels[0].tolist()
        x1, y1, x2, y2 = (round(v * 96) for v in (x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        assert (img[:, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1] > 230).float().mean() > 0.95, key


def test_mosaic_decodes_only_the_tiles_it_shows_and_gives_the_same_sample(tiny_yaml: Path, monkeypatch) -> None:
    dataset = YOLODataset(scan_yaml(tiny_yaml, "train"), imgsz=64, augment=True, albumentations=False)
    loads: list[int] = []
    load_resized = dataset.load_resized
    monkeypatch.setattr(dataset, "load_resized", lambda i: loads.append(i) or load_resized(i))
    keys = [(i, e) for i in range(len(dataset)) for e in range(6)]
    lazy, decoded = [], []
    for key in keys:
        before = len(loads)
        lazy.append(dataset[key])
        decoded.append(len(loads) - before)
    monkeypatch.setattr(MosaicPlan, "needs", lambda self, offset, hw: True)  # load every tile
    for key, sample in zip(keys, lazy, strict=True):
        full = dataset[key]
        torch.testing.assert_close(sample[0], full[0], rtol=0, atol=0)
        torch.testing.assert_close(sample[1], full[1], rtol=0, atol=0)
    assert max(decoded) == 4 and min(decoded) < 4  # some mosaics show fewer than 4 tiles and skip the others


def test_unreadable_tile_replacement_moves_tiles_and_still_loads_every_tile_shown(tiny_yaml: Path) -> None:
    scan = scan_yaml(tiny_yaml, "train")
    dataset = YOLODataset(scan, imgsz=64, augment=True, hyp=NO_COLOUR, albumentations=False)
    for path in dataset.image_files[::2]:
        Path(path).unlink()  # half the images vanish after the scan: replacements of other sizes move the tiles
    for key in [(i, e) for i in range(len(dataset)) for e in range(3)]:
        img, labels, _, _ = dataset[key]  # render_mosaic raises if a tile it shows was not loaded
        assert img.shape == (3, 64, 64) and (labels[:, 2:] <= 1).all()
    assert int(dataset.load_failures) == len(dataset.image_files[::2])
