"""DetectionModel: architectures, weight-contract keys, sizes, strides, anchors, head init, decode, fuse, summary."""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from lightning_yolo.models import Detect, DetectionModel, available_configs
from lightning_yolo.models.blocks import Conv

P5 = ["yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"]
P6 = [f"{name}6" for name in P5]
SLOW = {"yolov5m", "yolov5l", "yolov5x", "yolov5m6", "yolov5l6", "yolov5x6"}  # forward/backward only
DATA = Path(__file__).parent / "data"

# Parameter counts YOLOv5 prints for its own models at nc=80 (unfused, "Model summary: ... parameters").
# yolov5s: the v7.0 tutorial notebook; yolov5n: the official yolov5n.pt (its parameter tensors summed);
# m, l, x: YOLOv5 summaries as quoted in its issues and third-party reproductions (x agrees with the v6.x
# tutorial's fused 86,705,005 checked below).
PUBLISHED_PARAMS = {
    "yolov5n": 1_872_157,
    "yolov5s": 7_235_389,
    "yolov5m": 21_190_557,
    "yolov5l": 46_563_709,
    "yolov5x": 86_749_405,
}
# After fuse() (BatchNorm folded), as printed by YOLOv5's tutorial notebooks (v7.0 for s, v6.1/6.2 for x).
PUBLISHED_FUSED_PARAMS = {"yolov5s": 7_225_885, "yolov5x": 86_705_005}
# P6 models: only the README's rounded "params (M)" column exists (v7.0 README). That column mixes fused
# and unfused counts (x6's 140.7 is the fused count), so either rounding must give the README value.
README_PARAMS_M = {"yolov5n6": 3.2, "yolov5s6": 12.6, "yolov5m6": 35.7, "yolov5l6": 76.8, "yolov5x6": 140.7}
README_GFLOPS_640 = {"yolov5n": 4.5, "yolov5s": 16.5, "yolov5m": 49.0, "yolov5n6": 4.6, "yolov5s6": 16.8}

# state_dict sizes derived by hand from the YAMLs: every Conv block holds 6 entries (conv.weight, bn.weight,
# bn.bias, bn.running_mean, bn.running_var, bn.num_batches_tracked); Detect holds anchors plus a weight and
# a bias per level. P5: 9 Conv rows + SPPF (2 Convs) + 8 C3 rows (3 Convs + 2 per Bottleneck); P6: 12 Conv
# rows + SPPF + 11 C3 rows. Bottlenecks: sum over C3 rows of max(round(n * depth_multiple), 1).
#   P5 n=[3,6,9,3,3,3,3,3]:       gd .33 -> 11, .67 -> 22, 1.0 -> 33, 1.33 -> 44
#   P6 n=[3,6,9,3,3,3,3,3,3,3,3]: gd .33 -> 14, .67 -> 28, 1.0 -> 42, 1.33 -> 56
EXPECTED_KEY_COUNTS = {
    "yolov5n": 6 * (9 + 2 + 3 * 8 + 2 * 11) + 7,
    "yolov5s": 6 * (9 + 2 + 3 * 8 + 2 * 11) + 7,
    "yolov5m": 6 * (9 + 2 + 3 * 8 + 2 * 22) + 7,
    "yolov5l": 6 * (9 + 2 + 3 * 8 + 2 * 33) + 7,
    "yolov5x": 6 * (9 + 2 + 3 * 8 + 2 * 44) + 7,
    "yolov5n6": 6 * (12 + 2 + 3 * 11 + 2 * 14) + 9,
    "yolov5s6": 6 * (12 + 2 + 3 * 11 + 2 * 14) + 9,
    "yolov5m6": 6 * (12 + 2 + 3 * 11 + 2 * 28) + 9,
    "yolov5l6": 6 * (12 + 2 + 3 * 11 + 2 * 42) + 9,
    "yolov5x6": 6 * (12 + 2 + 3 * 11 + 2 * 56) + 9,
}

# The v7.0 yolov5n.yaml anchors in pixels, P3 to P5.
YOLOV5N_ANCHORS_PX = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


@functools.cache
def _built(name: str) -> DetectionModel:
    """One fresh model per architecture for the read-only tests (building the large ones takes a while)."""
    torch.manual_seed(0)
    return DetectionModel(f"{name}.yaml")


def _slow_marked(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def _tiny_cfg(**overrides) -> dict:
    """A two-level detector small enough to build in milliseconds."""
    cfg = {
        "nc": 3,
        "depth_multiple": 1.0,
        "width_multiple": 1.0,
        "anchors": [[10, 13, 16, 30], [30, 61, 62, 45]],
        "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]],
        "head": [[[1, 2], 1, "Detect", ["nc", "anchors"]]],
    }
    cfg.update(overrides)
    return cfg


def test_shipped_configs_are_the_ten_yolov5_architectures() -> None:
    assert available_configs() == sorted(f"{n}.yaml" for n in P5 + P6)


def test_state_dict_keys_equal_official_yolov5n_checkpoint() -> None:
    lines = (DATA / "official_keys_yolov5n.txt").read_text().splitlines()
    official = [line for line in lines if line and not line.startswith("#")]
    assert list(_built("yolov5n").state_dict()) == official


@pytest.mark.parametrize("name", P5 + P6)
def test_state_dict_keys_follow_the_weight_contract(name: str) -> None:
    keys = list(_built(name).state_dict())
    last = 24 if name in P5 else 33
    nl = 3 if name in P5 else 4
    assert len(keys) == EXPECTED_KEY_COUNTS[name]
    assert keys[0] == "model.0.conv.weight"
    assert keys[-1] == f"model.{last}.m.{nl - 1}.bias"
    assert f"model.{last}.anchors" in keys
    assert not [k for k in keys if "grid" in k or k.endswith(".stride")]


@pytest.mark.parametrize("name", P5)
def test_parameter_count_equals_yolov5s_own_figure(name: str) -> None:
    model = _built(name)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]
    if name in PUBLISHED_FUSED_PARAMS:
        fused = copy.deepcopy(model).fuse()
        assert sum(p.numel() for p in fused.parameters()) == PUBLISHED_FUSED_PARAMS[name]


@pytest.mark.parametrize("name", P6)
def test_p6_parameter_count_rounds_to_the_readme_value(name: str) -> None:
    model = _built(name)
    unfused = sum(p.numel() for p in model.parameters())
    bn_params = sum(m.bn.weight.numel() * 2 for m in model.modules() if isinstance(m, Conv))
    assert README_PARAMS_M[name] in (round(unfused / 1e6, 1), round((unfused - bn_params) / 1e6, 1))


@pytest.mark.parametrize("name", _slow_marked(P5 + P6))
def test_forward_backward_gives_finite_gradient_to_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = DetectionModel(name)
    x = torch.rand(2, 3, 64, 64)  # 64 px: a multiple of the P6 stride; batch 2 so 1x1 P6 maps can batch-norm
    raw = model(x)
    assert [tuple(p.shape) for p in raw] == [(2, 3, 64 // s, 64 // s, 85) for s in (8, 16, 32, 64)[: len(raw)]]
    sum((p.float() ** 2).mean() for p in raw).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize(("name", "strides"), [("yolov5n", [8, 16, 32]), ("yolov5n6", [8, 16, 32, 64])])
def test_strides_measured_by_the_probe(name: str, strides: list[int]) -> None:
    model = _built(name)
    assert model.stride.tolist() == strides
    assert model.model[-1].stride is model.stride


def test_anchors_are_stored_in_grid_units() -> None:
    head = _built("yolov5n").model[-1]
    assert head.anchors.shape == (3, 3, 2)
    expected = torch.tensor(YOLOV5N_ANCHORS_PX, dtype=torch.float32).view(3, 3, 2) / torch.tensor([8.0, 16, 32]).view(
        3, 1, 1
    )
    torch.testing.assert_close(head.anchors, expected)


def test_anchors_listed_against_stride_order_are_reversed() -> None:
    cfg = _tiny_cfg(anchors=[[30, 61, 62, 45], [10, 13, 16, 30]])  # large anchors on the fine level
    head = DetectionModel(cfg).model[-1]
    pixels = head.anchors * head.stride.view(-1, 1, 1)
    torch.testing.assert_close(pixels, torch.tensor([[[10.0, 13], [16, 30]], [[30, 61], [62, 45]]]))


def test_batchnorm_and_activation_settings() -> None:
    model = _built("yolov5s")
    convs = [m for m in model.modules() if isinstance(m, Conv)]
    assert convs and all(isinstance(c.act, nn.SiLU) for c in convs)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == len(convs)
    assert all(bn.eps == 1e-3 and bn.momentum == 0.03 for bn in bns)


def test_stride_probe_leaves_batchnorm_as_yolov5_does() -> None:
    # YOLOv5 probes in train mode while BatchNorm still has PyTorch's default momentum 0.1, on all-zero
    # activations: running_var = 0.9 * 1 + 0.1 * 0 = 0.9, running_mean stays 0, one batch tracked.
    bns = [m for m in _built("yolov5n").modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        torch.testing.assert_close(bn.running_var, torch.full_like(bn.running_var, 0.9))
        assert not bn.running_mean.any() and bn.num_batches_tracked.item() == 1


def test_model_is_left_in_train_mode_after_build() -> None:
    assert all(m.training for m in _built("yolov5n").modules())


@pytest.mark.parametrize("nc", [80, 3, 1])
def test_head_biases_start_from_yolov5_priors(nc: int) -> None:
    torch.manual_seed(0)
    head = DetectionModel("yolov5n", nc=nc).model[-1]
    for conv, s in zip(head.m, (8, 16, 32), strict=True):
        bound = 1 / math.sqrt(conv.in_channels)  # nn.Conv2d's default bias init is U(-bound, bound)
        b = conv.bias.detach().view(3, 5 + nc)
        obj = b[:, 4] - math.log(8 / (640 / s) ** 2)
        cls = b[:, 5:] - math.log(0.6 / (nc - 0.99999))
        box = b[:, :4]
        assert obj.abs().max() <= bound and cls.abs().max() <= bound and box.abs().max() <= bound


def test_depth_and_width_multiples_scale_rows() -> None:
    s, x = _built("yolov5s"), _built("yolov5x")
    assert s.model[0].conv.out_channels == 32  # ceil(64 * 0.5 / 8) * 8
    assert x.model[0].conv.out_channels == 80  # ceil(64 * 1.25 / 8) * 8
    assert len(s.model[6].m) == 3  # max(round(9 * 0.33), 1)
    assert len(x.model[6].m) == 12  # round(9 * 1.33)
    assert len(s.model[2].m) == 1  # round(3 * 0.33)
    assert s.model[11].scale_factor == 2 and isinstance(s.model[11], nn.Upsample)


def test_width_scaling_spares_a_conv_producing_the_head_outputs() -> None:
    cfg = _tiny_cfg(width_multiple=0.25)
    cfg["backbone"].append([-1, 1, "Conv", [2 * (3 + 5), 1, 1]])  # na * (nc + 5) = 16 output channels
    model = DetectionModel(cfg)
    assert model.model[3].conv.out_channels == 16  # scaled it would be ceil(16 * 0.25 / 8) * 8 = 8
    assert model.model[0].conv.out_channels == 8  # ceil(8 * 0.25 / 8) * 8


def test_eval_output_is_decoded_and_has_one_row_per_anchor_and_cell() -> None:
    model = _built("yolov5n")
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.rand(2, 3, 64, 96))
    finally:
        model.train()
    assert out.shape == (2, 3 * (8 * 12 + 4 * 6 + 2 * 3), 85)
    assert ((out[..., 4:] >= 0) & (out[..., 4:] <= 1)).all()
    assert (out[..., 2:4] > 0).all()


def test_decoding_forward_raw_gives_the_eval_output() -> None:
    torch.manual_seed(0)
    model = DetectionModel("yolov5n").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        raw = model.forward_raw(x)
        assert isinstance(raw, list) and len(raw) == 3
        torch.testing.assert_close(model.model[-1].decode(raw), model(x))


def test_decode_follows_the_yolov5_formulas_cell_by_cell() -> None:
    torch.manual_seed(0)
    head = DetectionModel(_tiny_cfg()).model[-1]
    raw = [torch.randn(1, 2, 4, 6, 8), torch.randn(1, 2, 2, 3, 8)]  # (bs, na, ny, nx, 5 + nc) at 32x48 input
    out = head.decode(raw)
    assert out.shape == (1, 2 * 24 + 2 * 6, 8)
    stride = [4.0, 8.0]
    anchors_px = [[[10, 13], [16, 30]], [[30, 61], [62, 45]]]
    row = 0
    for level, p in enumerate(raw):
        for a in range(2):
            for gy in range(p.shape[2]):
                for gx in range(p.shape[3]):
                    t = p[0, a, gy, gx]
                    sig = t.sigmoid()
                    cx = (sig[0] * 2 - 0.5 + gx) * stride[level]
                    cy = (sig[1] * 2 - 0.5 + gy) * stride[level]
                    w = (sig[2] * 2) ** 2 * anchors_px[level][a][0]
                    h = (sig[3] * 2) ** 2 * anchors_px[level][a][1]
                    expected = torch.cat((torch.stack((cx, cy, w, h)), sig[4:]))
                    torch.testing.assert_close(out[0, row], expected)
                    row += 1


def test_tiny_config_probe_measures_its_own_strides() -> None:
    assert DetectionModel(_tiny_cfg()).stride.tolist() == [4.0, 8.0]


def test_fused_model_gives_the_same_eval_output() -> None:
    torch.manual_seed(0)
    model = DetectionModel("yolov5n")
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the fold has something to do
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert model.fuse() is model
        fused = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(fused, expected, atol=1e-4, rtol=1e-4)


def test_unknown_module_name_is_a_clear_error() -> None:
    cfg = _tiny_cfg()
    cfg["backbone"][1] = [-1, 1, "__import__('os').system", [16, 3, 2]]
    with pytest.raises(ValueError, match=r"dict: row 1 .*unknown module"):
        DetectionModel(cfg)


def test_unknown_module_error_names_the_yaml_file(tmp_path: Path) -> None:
    cfg = _tiny_cfg()
    cfg["backbone"][2] = [-1, 1, "nn.Conv3d", [16, 3, 2]]
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=r"custom\.yaml: row 2 .*nn\.Conv3d"):
        DetectionModel(path)


def test_bad_from_index_is_a_clear_error() -> None:
    cfg = _tiny_cfg()
    cfg["head"] = [[[1, 7], 1, "Detect", ["nc", "anchors"]]]
    with pytest.raises(ValueError, match=r"row 3 .*'from'"):
        DetectionModel(cfg)


def test_missing_key_is_a_clear_error() -> None:
    cfg = _tiny_cfg()
    del cfg["anchors"]
    with pytest.raises(ValueError, match="anchors"):
        DetectionModel(cfg)


@pytest.mark.parametrize(
    ("key", "value"),
    [("nc", "80"), ("nc", 0), ("depth_multiple", -1), ("anchors", [[10, 13, 16]]), ("anchors", "three"), ("head", 5)],
)
def test_bad_header_values_are_clear_errors(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"dict: '{key}'"):
        DetectionModel(_tiny_cfg(**{key: value}))


def test_anchor_override_of_the_wrong_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="anchors"):
        DetectionModel(_tiny_cfg(), anchors=[[1, 2, 3]])


def test_unknown_config_name_lists_the_shipped_ones() -> None:
    with pytest.raises(FileNotFoundError, match="yolov5s.yaml"):
        DetectionModel("yolov9q")


def test_config_by_name_with_or_without_suffix_and_by_path(tmp_path: Path) -> None:
    a, b = DetectionModel("yolov5n"), DetectionModel("yolov5n.yaml")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(a.yaml))
    c = DetectionModel(str(path))
    assert a.yaml == b.yaml == c.yaml
    assert list(c.state_dict()) == list(a.state_dict())


def test_dict_config_is_not_modified_and_nc_override_applies() -> None:
    cfg = _tiny_cfg()
    before = copy.deepcopy(cfg)
    model = DetectionModel(cfg, nc=5)
    assert cfg == before
    assert model.nc == 5 and model.yaml["nc"] == 5 and model.model[-1].no == 10
    assert model.names == ["0", "1", "2", "3", "4"]
    assert model.model[-1].m[0].out_channels == 2 * 10


def test_names_come_from_the_yaml_when_present() -> None:
    model = DetectionModel(_tiny_cfg(names=["cat", "dog", "bird"]))
    assert model.names == ["cat", "dog", "bird"]
    assert DetectionModel(_tiny_cfg(names={0: "a", 1: "b", 2: "c"})).names == ["a", "b", "c"]


def test_anchor_override_as_count_and_as_list() -> None:
    by_count = DetectionModel(_tiny_cfg(), anchors=3).model[-1]
    assert by_count.na == 3 and by_count.anchors.shape == (2, 3, 2)
    listed = [[5, 6, 7, 8, 9, 10], [20, 21, 22, 23, 24, 25]]
    by_list = DetectionModel(_tiny_cfg(), anchors=listed).model[-1]
    torch.testing.assert_close(
        by_list.anchors * by_list.stride.view(-1, 1, 1), torch.tensor(listed, dtype=torch.float32).view(2, 3, 2)
    )


def test_yaml_channel_count_builds_a_greyscale_model() -> None:
    model = DetectionModel(_tiny_cfg(ch=1))
    assert model.model[0].conv.in_channels == 1
    assert model(torch.rand(2, 1, 32, 32))[0].shape == (2, 2, 8, 8, 8)


def test_grid_cache_stays_out_of_the_state_dict_and_follows_dtype() -> None:
    model = DetectionModel(_tiny_cfg()).eval()
    with torch.no_grad():
        out32 = model(torch.rand(1, 3, 32, 32))
        out64 = model.double()(torch.rand(1, 3, 32, 32, dtype=torch.float64))
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    assert not [k for k in model.state_dict() if "grid" in k]


def test_detect_rejects_mismatched_levels() -> None:
    with pytest.raises(ValueError, match="levels"):
        Detect(nc=1, anchors=[[1, 2, 3, 4]], ch=[8, 16])


def test_summary_reports_yolov5s_figures() -> None:
    text = _built("yolov5s").summary(640)
    assert text.startswith("YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, ")
    gflops = float(text.split(", ")[-1].split()[0])
    assert abs(gflops - README_GFLOPS_640["yolov5s"]) <= 0.2


@pytest.mark.parametrize("name", ["yolov5n", "yolov5m", "yolov5n6", "yolov5s6"])
def test_gflops_match_the_readme(name: str) -> None:
    text = _built(name).summary(640)
    gflops = float(text.split(", ")[-1].split()[0])
    assert abs(gflops - README_GFLOPS_640[name]) <= 0.2


def test_summary_table_lists_every_row_and_leaves_the_model_untouched() -> None:
    model = DetectionModel("yolov5n")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    text = model.summary(320, verbose=True)
    lines = text.splitlines()
    assert len(lines) == 1 + 25 + 1
    assert "Detect" in lines[25] and "[17, 20, 23]" in lines[25]
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
