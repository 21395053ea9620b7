"""Weights files: one loader for official YOLOv5 checkpoints (imported safely), lightning_yolo's weights file and
training checkpoints; building a model from any of them; transfer."""

from __future__ import annotations

import argparse
import collections
import copy
import logging
import os
import re
import struct
import sys
import types
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lightning_yolo.models.unpickler import (
    ArchiveError,
    RefusedGlobalError,
    StandIn,
    TensorRef,
    pickled_globals,
    restricted_load,
)
from lightning_yolo.models.weights import (
    FORMAT,
    Weights,
    WeightsError,
    build_model_from_weights,
    checkpoint_weights,
    count_parameters,
    load_weights,
    save_weights,
    transfer_state_dict,
)
from lightning_yolo.models.yolo import DetectionModel

FORCE_NO_WO = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@pytest.fixture(scope="module")
def yolov5n_path(shared: Path) -> Path:
    return shared / "weights" / "yolov5n.pt"


@pytest.fixture(scope="module")
def yolov5n(yolov5n_path: Path) -> Weights:
    return load_weights(yolov5n_path)


# --------------------------------------------------------------------------------------------------------------
# Hand-made pickles and archives
# --------------------------------------------------------------------------------------------------------------

PROTO, STOP, MARK, TUPLE, REDUCE, NEWOBJ, BUILD = b"\x80\x02", b".", b"(", b"t", b"R", b"\x81", b"b"
EMPTY_DICT, EMPTY_TUPLE, SETITEM, BINPERSID, NEWFALSE = b"}", b")", b"s", b"Q", b"\x89"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _tuple(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def _write_archive(path: Path, pickle_bytes: bytes, records: dict[str, bytes] | None = None) -> Path:
    """A zip laid out like torch.save's: ``archive/data.pkl``, ``archive/data/<key>``, ``archive/version``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes + STOP)
        for key, data in (records or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


def _tensor_pickle(numel: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """Pickle opcodes that rebuild a float32 tensor from storage record ``0`` the way torch.save writes it."""
    storage = _tuple(_str("storage"), _global("torch", "FloatStorage"), _str("0"), _str("cpu"), _int(numel))
    hooks = _global("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
    args = _tuple(storage + BINPERSID, _int(0), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), NEWFALSE, hooks)
    return _global("torch._utils", "_rebuild_tensor_v2") + args + REDUCE


def _read(path: Path) -> object:
    with zipfile.ZipFile(path) as archive:
        return restricted_load(archive)


# --------------------------------------------------------------------------------------------------------------
# The official yolov5n.pt
# --------------------------------------------------------------------------------------------------------------


def test_official_yolov5n_imports_with_its_architecture_names_and_strides(yolov5n: Weights) -> None:
    assert count_parameters(yolov5n.state_dict) == 1_872_157
    assert len(yolov5n.names) == 80 and yolov5n.names[0] == "person"
    assert yolov5n.stride == [8.0, 16.0, 32.0]
    assert yolov5n.yaml["nc"] == 80 and yolov5n.yaml["depth_multiple"] == 0.33
    assert len(yolov5n.yaml["backbone"]) + len(yolov5n.yaml["head"]) == 25
    assert yolov5n.meta["source"] == "yolov5" and yolov5n.meta["epoch"] == -1


def test_official_state_dict_names_follow_the_module_tree(yolov5n: Weights) -> None:
    keys = list(yolov5n.state_dict)
    assert keys[:5] == [
        "model.0.conv.weight",
        *(f"model.0.bn.{n}" for n in ("weight", "bias", "running_mean", "running_var")),
    ]
    assert keys[-1] == "model.24.m.2.bias" and "model.24.anchors" in keys
    assert yolov5n.state_dict["model.24.anchors"].shape == (3, 3, 2)
    assert yolov5n.state_dict["model.24.m.0.weight"].shape == (255, 64, 1, 1)


def test_official_tensors_are_float32_and_integer_buffers_keep_their_type(yolov5n: Weights) -> None:
    dtypes = {k: t.dtype for k, t in yolov5n.state_dict.items()}
    assert dtypes["model.0.bn.num_batches_tracked"] == torch.int64
    assert {d for k, d in dtypes.items() if not k.endswith("num_batches_tracked")} == {torch.float32}
    # anchors are stored in grid units: 10x13 px at stride 8
    torch.testing.assert_close(yolov5n.state_dict["model.24.anchors"][0, 0], torch.tensor([1.25, 1.625]))


def test_official_files_are_told_by_content_and_never_reach_torch_load(
    yolov5n_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must not be used for official checkpoints")

    renamed = tmp_path / "official.ckpt"  # the suffix of a training checkpoint does not mislead the loader
    renamed.write_bytes(yolov5n_path.read_bytes())
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setenv(FORCE_NO_WO, "1")
    loaded = load_weights(renamed)
    assert count_parameters(loaded.state_dict) == 1_872_157 and loaded.meta["source"] == "yolov5"


@pytest.mark.parametrize("force_no_weights_only", [False, True])
def test_load_weights_reads_official_files(
    yolov5n_path: Path, yolov5n: Weights, monkeypatch: pytest.MonkeyPatch, force_no_weights_only: bool
) -> None:
    if force_no_weights_only:
        monkeypatch.setenv(FORCE_NO_WO, "1")
    loaded = load_weights(yolov5n_path)
    assert loaded.names == yolov5n.names and loaded.stride == yolov5n.stride
    assert loaded.state_dict.keys() == yolov5n.state_dict.keys()


# --------------------------------------------------------------------------------------------------------------
# lightning_yolo's own weights file
# --------------------------------------------------------------------------------------------------------------


def test_converted_file_loads_with_plain_weights_only_torch_load(yolov5n: Weights, tmp_path: Path) -> None:
    path = save_weights(tmp_path / "w.pt", yolov5n.yaml, yolov5n.state_dict, yolov5n.names, yolov5n.stride)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == 1
    assert set(raw) == {"format", "version", "yaml", "state_dict", "names", "stride"}
    assert raw["names"] == yolov5n.names and raw["stride"] == [8.0, 16.0, 32.0]


@pytest.mark.parametrize("force_no_weights_only", [False, True])
def test_own_weights_file_round_trips(
    yolov5n: Weights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, force_no_weights_only: bool
) -> None:
    if force_no_weights_only:
        monkeypatch.setenv(FORCE_NO_WO, "1")
    path = save_weights(tmp_path / "w.pt", yolov5n.yaml, yolov5n.state_dict, yolov5n.names, yolov5n.stride)
    loaded = load_weights(path)
    assert loaded.yaml == yolov5n.yaml and loaded.names == yolov5n.names and loaded.stride == yolov5n.stride
    assert loaded.meta["source"] == "lightning_yolo"
    assert list(loaded.state_dict) == list(yolov5n.state_dict)
    for key, tensor in yolov5n.state_dict.items():
        assert torch.equal(loaded.state_dict[key], tensor), key
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"], "the atomic write left a temporary file behind"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"a": torch.zeros(2)}, "not a Lightning checkpoint (no state_dict), a lightning_yolo weights file or an"),
        ({"state_dict": {"a": torch.zeros(2)}}, "the checkpoint has no architecture ('hyper_parameters.cfg')"),
        ({"format": FORMAT, "version": 99, "state_dict": {}}, "weights file version 99, expected 1"),
    ],
)
def test_other_torch_files_are_not_mistaken_for_weights(content: dict, reason: str, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(WeightsError, match=re.escape(f"cannot load {path}: {reason}")):
        load_weights(path)


def test_a_weights_file_that_does_not_fit_its_architecture_lists_the_mismatches(
    yolov5n: Weights, tmp_path: Path
) -> None:
    state_dict = dict(yolov5n.state_dict)
    del state_dict["model.24.anchors"]
    state_dict["model.0.conv.weight"] = torch.zeros(1)
    path = save_weights(tmp_path / "w.pt", yolov5n.yaml, state_dict, yolov5n.names, yolov5n.stride)
    message = "2 mismatched keys: missing model.24.anchors; model.0.conv.weight (1,) in the file, (16, 3, 6, 6)"
    with pytest.raises(WeightsError, match=re.escape(f"cannot load {path}: the weights do not fit the architecture")):
        build_model_from_weights(path)
    with pytest.raises(WeightsError, match=re.escape(message)):
        build_model_from_weights(path)


# --------------------------------------------------------------------------------------------------------------
# lightning_yolo training checkpoints
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> tuple[DetectionModel, DetectionModel]:
    """A small 2-class model and an EMA copy of it with other weights."""
    torch.manual_seed(0)
    model = DetectionModel("yolov5n", nc=2)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.5).add_(0.01)
    return model, ema


def _checkpoint(path: Path, model: nn.Module, ema: nn.Module | None = None, **hparams: Any) -> Path:
    """A checkpoint laid out like the LightningModule's: ``model.*``, ``ema.module.*``, ``hyper_parameters``."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()} | {"loss.anchors": torch.zeros(3, 3, 2)}
    if ema is not None:
        state |= {f"ema.module.{k}": v for k, v in ema.state_dict().items()} | {"ema.updates": torch.tensor(7)}
    hparams = {"cfg": model.yaml, "nc": 2, "names": ["cat", "dog"], "weights": None} | hparams
    content = {"epoch": 4, "global_step": 40, "state_dict": state, "hyper_parameters": hparams}
    torch.save(content, path)
    return path


def test_checkpoint_gives_its_ema_weights_with_architecture_names_and_strides(trained: tuple, tmp_path: Path) -> None:
    model, ema = trained
    loaded = load_weights(_checkpoint(tmp_path / "last.ckpt", model, ema))
    assert loaded.names == ["cat", "dog"] and loaded.stride == [8.0, 16.0, 32.0] and loaded.yaml["nc"] == 2
    assert loaded.meta == {"source": "checkpoint", "epoch": 4, "global_step": 40}
    assert list(loaded.state_dict) == list(ema.state_dict())
    for key, tensor in ema.state_dict().items():
        assert torch.equal(loaded.state_dict[key], tensor), key


def test_checkpoint_without_ema_gives_the_model_weights(trained: tuple, tmp_path: Path) -> None:
    model, _ = trained
    loaded = load_weights(_checkpoint(tmp_path / "last.ckpt", model))
    torch.testing.assert_close(loaded.state_dict, model.state_dict(), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["weights.pt", "last.ckpt", "no_suffix"])
def test_checkpoint_kind_is_told_by_content_whatever_the_suffix(trained: tuple, tmp_path: Path, name: str) -> None:
    model, ema = trained
    loaded = load_weights(_checkpoint(tmp_path / name, model, ema))
    assert loaded.meta["source"] == "checkpoint"
    assert torch.equal(loaded.state_dict["model.0.conv.weight"], ema.state_dict()["model.0.conv.weight"])


def test_checkpoint_weights_prefers_the_ema_and_strips_the_prefix() -> None:
    a, b = torch.zeros(1), torch.ones(1)
    state = {"model.x": a, "ema.module.x": b, "ema.updates": torch.tensor(1), "loss.y": a}
    assert checkpoint_weights({"state_dict": state}, "c.ckpt") == {"x": b}
    assert checkpoint_weights({"state_dict": {"model.x": a, "loss.y": a}}, "c.ckpt") == {"x": a}
    with pytest.raises(WeightsError, match=re.escape("cannot load c.ckpt: the checkpoint holds no model weights")):
        checkpoint_weights({"state_dict": {"loss.y": a}}, "c.ckpt")


def test_build_model_from_a_checkpoint_builds_once_and_predicts_like_its_ema(
    trained: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lightning_yolo.models.weights as weights_module

    model, ema = trained
    path = _checkpoint(tmp_path / "last.ckpt", model, ema)
    built: list[DetectionModel] = []

    def counting(*args: Any, **kwargs: Any) -> DetectionModel:
        built.append(DetectionModel(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(weights_module, "DetectionModel", counting)
    rebuilt = build_model_from_weights(path)
    assert len(built) == 1 and rebuilt.names == ["cat", "dog"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), ema.eval()(x))


def test_build_model_from_a_checkpoint_for_another_nc_transfers_all_but_the_class_outputs(
    trained: tuple, tmp_path: Path
) -> None:
    model, ema = trained
    other = build_model_from_weights(_checkpoint(tmp_path / "last.ckpt", model, ema), nc=5)
    assert other.nc == 5 and other.names == [str(i) for i in range(5)]
    assert torch.equal(other.state_dict()["model.0.conv.weight"], ema.state_dict()["model.0.conv.weight"])


@pytest.mark.parametrize(
    ("cfg", "reason"),
    [
        (None, "the checkpoint has no architecture ('hyper_parameters.cfg')"),
        ({"nc": 2}, "its architecture cannot be built: dict: model YAML lacks required key(s)"),
    ],
)
def test_a_checkpoint_without_a_usable_architecture_is_refused(
    trained: tuple, tmp_path: Path, cfg: dict | None, reason: str
) -> None:
    path = _checkpoint(tmp_path / "bad.ckpt", trained[0], cfg=cfg)
    with pytest.raises(WeightsError, match=re.escape(f"cannot load {path}: {reason}")):
        load_weights(path)


def test_a_checkpoint_whose_weights_do_not_fit_its_architecture_lists_the_mismatches(
    trained: tuple, tmp_path: Path
) -> None:
    three_classes = DetectionModel(dict(trained[0].yaml), nc=3)
    path = _checkpoint(tmp_path / "bad.ckpt", three_classes, cfg=trained[0].yaml)  # nc=3 weights, nc=2 cfg
    reason = "the weights do not fit the architecture the file describes, 6 mismatched keys: model.24.m.0.weight"
    with pytest.raises(WeightsError, match=re.escape(f"cannot load {path}: {reason} (24, 64, 1, 1) in the file")):
        load_weights(path)


def test_pickled_globals_are_read_without_unpickling(yolov5n_path: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(yolov5n_path) as archive:
        official = pickled_globals(archive)
    assert {"models.yolo.Model", "models.common.C3", "torch._utils._rebuild_tensor_v2", "builtins.set"} <= official
    for protocol in (2, 4, 5):  # protocol 4 and later name globals with STACK_GLOBAL
        path = tmp_path / f"p{protocol}.pt"
        torch.save(
            {"t": torch.zeros(2), "d": collections.OrderedDict(a=1), "s": {b"x"}}, path, pickle_protocol=protocol
        )
        with zipfile.ZipFile(path) as archive:
            found = pickled_globals(archive)
        assert {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"} <= found
        assert not any(name.startswith("models.") or name == "?" for name in found)


# --------------------------------------------------------------------------------------------------------------
# Transfer
# --------------------------------------------------------------------------------------------------------------


def test_transfer_copies_tensors_whose_name_and_shape_match(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    source = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 6, 1)).state_dict()
    target = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1), nn.Conv2d(2, 2, 1))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="lightning_yolo"):
        assert transfer_state_dict(target, source) == (2, 6)
    assert "transferred 2/6 tensors" in caplog.text
    after = target.state_dict()
    assert torch.equal(after["0.weight"], source["0.weight"]) and torch.equal(after["0.bias"], source["0.bias"])
    for key in ("1.weight", "1.bias", "2.weight", "2.bias"):
        assert torch.equal(after[key], before[key]), key


def test_transfer_to_three_classes_keeps_everything_but_the_class_outputs(
    yolov5n: Weights, caplog: pytest.LogCaptureFixture
) -> None:
    from lightning_yolo.models.yolo import DetectionModel

    model = DetectionModel(yolov5n.yaml, nc=3)
    with caplog.at_level(logging.INFO, logger="lightning_yolo"):
        transferred, total = transfer_state_dict(model, yolov5n.state_dict)
    assert transferred < total == len(model.state_dict())
    assert f"transferred {transferred}/{total} tensors" in caplog.text
    own = model.state_dict()
    same = [k for k, v in own.items() if v.shape == yolov5n.state_dict[k].shape]
    assert len(same) == transferred
    assert all(k.startswith("model.24.m.") for k in own if k not in same)  # only the 1x1 output convs differ
    for key in same:
        assert torch.equal(own[key], yolov5n.state_dict[key]), key


def test_build_model_from_weights_keeps_names_or_transfers_for_a_new_nc(yolov5n_path: Path) -> None:
    model = build_model_from_weights(yolov5n_path)
    assert model.names[0] == "person" and sum(p.numel() for p in model.parameters()) == 1_872_157
    small = build_model_from_weights(yolov5n_path, nc=3)
    assert small.model[-1].nc == 3
    torch.testing.assert_close(small.state_dict()["model.0.conv.weight"], model.state_dict()["model.0.conv.weight"])


# --------------------------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------------------------


def _bad_file(kind: str, tmp_path: Path, official: Path) -> Path:
    path = tmp_path / f"{kind}.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "text":
        path.write_text("these are not the weights you are looking for\n" * 20)
    elif kind == "truncated":
        data = official.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zip_without_pickle":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    elif kind == "missing":
        pass
    return path


@pytest.mark.parametrize("kind", ["empty", "garbage", "text", "truncated", "zip_without_pickle", "missing"])
def test_bad_files_raise_weights_error_naming_the_file(kind: str, tmp_path: Path, yolov5n_path: Path) -> None:
    path = _bad_file(kind, tmp_path, yolov5n_path)
    with pytest.raises(WeightsError, match=re.escape(f"cannot load {path}: ")):
        load_weights(path)


def test_a_corrupted_tensor_record_is_reported(tmp_path: Path, yolov5n_path: Path) -> None:
    data = bytearray(yolov5n_path.read_bytes())
    with zipfile.ZipFile(yolov5n_path) as archive:
        info = archive.getinfo("archive/data/100")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len  # the record's data, past its local header
    data[start : start + 8] = bytes(8 * [0x5A])
    path = tmp_path / "corrupt.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=re.escape(str(path))):
        load_weights(path)


def test_tensor_data_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = _write_archive(tmp_path / "short.pt", PROTO + _tensor_pickle(4, (4,), (1,)), {"0": bytes(12)})
    with pytest.raises(ArchiveError, match="has 12 bytes, expected 16"):
        _read(path)


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    path = _write_archive(tmp_path / "oob.pt", PROTO + _tensor_pickle(4, (100,), (1,)), {"0": bytes(16)})
    with pytest.raises(ArchiveError, match="reaches past its storage"):
        _read(path)


# --------------------------------------------------------------------------------------------------------------
# Security
# --------------------------------------------------------------------------------------------------------------


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


class _Evaluates:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return eval, (f"__import__('os').system({self.command!r})",)


@pytest.mark.parametrize("force_no_weights_only", [False, True])
@pytest.mark.parametrize("suffix", [".pt", ".ckpt"])
@pytest.mark.parametrize(
    ("payload", "refused"), [(_RunsShell, f"{os.system.__module__}.system"), (_Evaluates, "builtins.eval")]
)
def test_checkpoints_that_would_run_code_are_refused_naming_the_global(
    payload: type,
    refused: str,
    suffix: str,
    force_no_weights_only: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if force_no_weights_only:
        monkeypatch.setenv(FORCE_NO_WO, "1")
    canary = tmp_path / "canary"
    path = tmp_path / f"evil{suffix}"
    torch.save({"epoch": 1, "state_dict": {}, "model": payload(f"touch {canary}")}, path)
    with pytest.raises(WeightsError, match=re.escape(f"refusing to load {path}: global '{refused}' is not allowed")):
        load_weights(path)
    with pytest.raises(WeightsError, match=re.escape(f"refusing to load {path}")):
        build_model_from_weights(path)
    assert not canary.exists()


def test_refused_global_error_names_the_global_in_python3_spelling(tmp_path: Path) -> None:
    path = _write_archive(tmp_path / "x.pt", PROTO + _global("__builtin__", "getattr"))
    with pytest.raises(RefusedGlobalError) as info:
        _read(path)
    assert info.value.name == "builtins.getattr"


def test_reduce_on_an_allowed_class_path_only_records_its_arguments(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    conv = _global("models.common", "Conv") + _tuple(_str(f"touch {canary}")) + REDUCE
    path = _write_archive(tmp_path / "x.pt", PROTO + EMPTY_DICT + _str("model") + conv + SETITEM)
    obj = _read(path)
    assert isinstance(obj["model"], StandIn) and obj["model"].args == (f"touch {canary}",)
    assert obj["model"].global_name == "models.common.Conv"
    with pytest.raises(WeightsError, match="models.common.Conv; only detection models"):
        load_weights(path)
    assert not canary.exists()


def test_build_on_a_stand_in_records_state_and_sets_no_attributes(tmp_path: Path) -> None:
    state = EMPTY_DICT + _str("__class__") + _str("os") + SETITEM
    model = _global("models.yolo", "Model") + EMPTY_TUPLE + NEWOBJ + state + BUILD
    obj = _read(_write_archive(tmp_path / "x.pt", PROTO + model))
    assert type(obj).__name__ == "Model" and isinstance(obj, StandIn)
    assert obj.state == {"__class__": "os"} and not hasattr(obj, "__dict__")


def test_a_stand_in_cannot_be_called(tmp_path: Path) -> None:
    instance = _global("models.yolo", "Model") + EMPTY_TUPLE + NEWOBJ
    path = _write_archive(tmp_path / "x.pt", PROTO + instance + _tuple(_str("touch x")) + REDUCE)
    with pytest.raises(WeightsError, match="malformed pickle"):
        load_weights(path)


def test_tensor_rebuild_through_a_foreign_function_is_refused(tmp_path: Path) -> None:
    func = _global("models.common", "Conv")
    call = _global("torch._tensor", "_rebuild_from_type_v2") + _tuple(func, _str("t"), EMPTY_TUPLE, EMPTY_DICT)
    path = _write_archive(tmp_path / "x.pt", PROTO + call + REDUCE)
    with pytest.raises(WeightsError, match="not allowed"):
        load_weights(path)


def test_tensors_come_back_wrapped_and_ignore_build(tmp_path: Path) -> None:
    state = EMPTY_DICT + _str("__class__") + _str("x") + SETITEM
    pickle_bytes = PROTO + _tensor_pickle(4, (2, 2), (2, 1)) + state + BUILD
    values = np.arange(4, dtype="<f4").tobytes()
    ref = _read(_write_archive(tmp_path / "x.pt", pickle_bytes, {"0": values}))
    assert isinstance(ref, TensorRef) and type(ref.tensor) is torch.Tensor
    torch.testing.assert_close(ref.tensor, torch.tensor([[0.0, 1.0], [2.0, 3.0]]))


def test_storages_must_be_allowed_storage_types(tmp_path: Path) -> None:
    storage = _tuple(_str("storage"), _global("models.common", "Conv"), _str("0"), _str("cpu"), _int(1))
    path = _write_archive(tmp_path / "x.pt", PROTO + storage + BINPERSID, {"0": bytes(4)})
    with pytest.raises(WeightsError, match="bad storage reference"):
        load_weights(path)


# --------------------------------------------------------------------------------------------------------------
# Small YOLOv5-like checkpoints written by torch.save, to pin ema/model choice and names formats
# --------------------------------------------------------------------------------------------------------------


def _fake_yolov5_modules(monkeypatch: pytest.MonkeyPatch) -> tuple[type, type]:
    """Register throwaway ``models.yolo.Model`` and ``models.common.Conv`` classes so torch.save can pickle them."""

    class Conv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1, bias=False)
            self.bn = nn.BatchNorm2d(4)
            self.act = nn.SiLU()

    class Model(nn.Module):
        def __init__(self, fill: float) -> None:
            super().__init__()
            self.model = nn.Sequential(Conv(), nn.Upsample(scale_factor=2.0))
            nn.init.constant_(self.model[0].conv.weight, fill)
            self.yaml = {"nc": 2, "backbone": [[-1, 1, "Conv", [4, 1, 1]]], "head": []}
            self.names = {0: "cat", 1: "dog"}
            self.stride = torch.tensor([8.0, 16.0, 32.0])

    modules = {"models": types.ModuleType("models")}
    for name, cls in (("models.common", Conv), ("models.yolo", Model)):
        module = types.ModuleType(name)
        cls.__module__, cls.__qualname__ = name, cls.__name__
        setattr(module, cls.__name__, cls)
        modules[name] = module
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return Model, Conv


@pytest.mark.parametrize("with_ema", [False, True])
def test_ema_is_preferred_when_present(tmp_path: Path, with_ema: bool) -> None:
    path = tmp_path / "fake.pt"
    with pytest.MonkeyPatch.context() as patch:
        model_cls, _ = _fake_yolov5_modules(patch)
        ema = model_cls(2.0).half() if with_ema else None
        torch.save({"epoch": 7, "model": model_cls(1.0).half(), "ema": ema, "optimizer": None}, path)
    assert "models.yolo" not in sys.modules or not hasattr(sys.modules["models.yolo"], "Model")
    loaded = load_weights(path)
    expected = 2.0 if with_ema else 1.0
    assert torch.equal(loaded.state_dict["model.0.conv.weight"], torch.full((4, 3, 1, 1), expected))
    assert loaded.names == ["cat", "dog"] and loaded.stride == [8.0, 16.0, 32.0] and loaded.meta["epoch"] == 7
    assert list(loaded.state_dict) == [
        "model.0.conv.weight",
        *(f"model.0.bn.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    ]


def test_build_cannot_modify_the_allowed_functions(tmp_path: Path) -> None:
    state = EMPTY_DICT + _str("marker") + _int(1) + SETITEM
    path = _write_archive(tmp_path / "x.pt", PROTO + _global("torch._utils", "_rebuild_tensor_v2") + state + BUILD)
    with pytest.raises(ArchiveError, match="cannot set state"):
        _read(path)


def test_stand_in_classes_cannot_be_given_attributes(tmp_path: Path) -> None:
    call = _global("torch._utils", "_rebuild_parameter")
    slots = EMPTY_DICT + _str("__call__") + call + SETITEM
    state = _tuple(b"N", slots)  # (None, slotstate): BUILD on the class itself
    path = _write_archive(tmp_path / "x.pt", PROTO + _global("models.common", "Conv") + state + BUILD)
    with pytest.raises(WeightsError, match=re.escape(f"cannot load {path}: ")):
        load_weights(path)
    conv = _read(_write_archive(tmp_path / "y.pt", PROTO + _global("models.common", "Conv")))
    with pytest.raises(ArchiveError, match="cannot set attribute"):
        conv.__call__ = print
    assert "__call__" not in vars(conv) and not callable(conv())


def test_options_with_namespaces_paths_and_numpy_scalars_become_plain_meta(tmp_path: Path) -> None:
    path = tmp_path / "fake.pt"
    opt = argparse.Namespace(lr=np.float64(0.01), batch=np.int64(16), save_dir=PurePosixPath("/runs/train/exp"))
    with pytest.MonkeyPatch.context() as patch:
        model_cls, _ = _fake_yolov5_modules(patch)
        torch.save({"model": model_cls(1.0), "opt": opt, "git": {"commit": "abc"}}, path)
    meta = load_weights(path).meta
    assert meta["opt"] == {"lr": 0.01, "batch": 16, "save_dir": "/runs/train/exp"}
    assert meta["git"] == {"commit": "abc"}
