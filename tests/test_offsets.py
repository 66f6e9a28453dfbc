"""Sampling locations of deformable convolutions (Dai et al. 2017, Fig. 5): the positions composed by
``cnnlab analyze offsets`` against ones known in advance, and the command on a real short training."""

import json
import math

import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.analysis.offsets import analyze_offsets, capture_deform_layers, compose, offset_study
from cnnlab.errors import CnnlabError
from cnnlab.layers import DeformConv2d
from cnnlab.train import TrainConfig, fit

TAPS = torch.cartesian_prod(torch.arange(3.0), torch.arange(3.0)).double()  # (9, 2): (dy, dx) row-major


def constant_offsets(layer: DeformConv2d, shifts: torch.Tensor) -> DeformConv2d:
    """Make ``layer`` predict the same offsets (9, 2) everywhere: zero weight, the shifts as bias."""
    nn.init.zeros_(layer.offset.weight)
    with torch.no_grad():
        layer.offset.bias.copy_(shifts.flatten())  # tap-major, dy then dx: the layer's channel order
    return layer


def regular(point: tuple[int, int], stride: int, padding: int) -> torch.Tensor:
    """The 9 input positions a 3x3 conv reads for ``point``, by the textbook formula."""
    return torch.tensor(point).double() * stride - padding + TAPS


@pytest.mark.parametrize("stride", [1, 2])
def test_constant_offsets_shift_the_regular_grid_by_exactly_that_offset(stride):
    torch.manual_seed(0)
    shifts = torch.randn(9, 2, dtype=torch.float64)  # a different (dy, dx) per tap
    layer = constant_offsets(DeformConv2d(2, 4, 3, stride=stride, padding=1).double(), shifts)
    (captured,) = capture_deform_layers(nn.Sequential(layer), torch.randn(1, 2, 11, 11, dtype=torch.float64))
    h, w = captured.out_size
    for point in [(0, 0), (h // 2, w // 2), (h - 1, 2)]:
        assert torch.allclose(compose([captured], point), regular(point, stride, 1) + shifts, atol=1e-12)
        assert torch.equal(compose([captured], point, learned=False), regular(point, stride, 1))
    nn.init.zeros_(layer.offset.bias)
    (captured,) = capture_deform_layers(nn.Sequential(layer), torch.randn(1, 2, 11, 11, dtype=torch.float64))
    assert torch.equal(compose([captured], (2, 3)), regular((2, 3), stride, 1))  # zero offsets: exactly


def test_two_layers_compose_tap_by_tap():
    torch.manual_seed(1)
    bottom_shift, top_shift = torch.randn(9, 2).double(), torch.randn(9, 2).double()
    model = nn.Sequential(
        constant_offsets(DeformConv2d(3, 5, 3, padding=1), bottom_shift),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Conv2d(5, 4, 1),  # pointwise: keeps positions
        constant_offsets(DeformConv2d(4, 4, 3, padding=1), top_shift),
    ).double()
    layers = capture_deform_layers(model, torch.randn(1, 3, 9, 9, dtype=torch.float64))
    assert [lay.name for lay in layers] == ["0", "4"]
    point = (4, 5)
    # Top tap k lands at p + pn_k - 1 + top_k, which reads p + pn_k - 1 + top_k + pn_m - 1 + bottom_m.
    top = regular(point, 1, 1) + top_shift
    expected = (top[:, None, :] + TAPS[None] - 1 + bottom_shift[None]).reshape(81, 2)
    assert torch.allclose(compose(layers, point), expected, atol=1e-12)
    plain = (regular(point, 1, 1)[:, None, :] + TAPS[None] - 1).reshape(81, 2)
    assert torch.equal(compose(layers, point, learned=False), plain)


def test_positions_are_where_the_layer_really_samples():
    """Input channels that hold each pixel's row and column: bilinear sampling of such a ramp returns
    the sampled coordinate itself, so a conv that copies tap k's sample reads off its true position."""
    torch.manual_seed(2)
    size = 12
    rows = torch.arange(size).double().view(size, 1).expand(size, size)
    x = torch.stack((rows, rows.T)).unsqueeze(0)  # (1, 2, H, W): y, x
    layer = DeformConv2d(2, 18, 3, padding=1, bias=False).double()
    with torch.no_grad():
        layer.weight.zero_()
        for k in range(9):  # output 2k = the row read by tap k, 2k + 1 its column
            layer.weight[2 * k, 0, k // 3, k % 3] = layer.weight[2 * k + 1, 1, k // 3, k % 3] = 1
        nn.init.normal_(layer.offset.weight, std=0.01)  # offsets that vary over the map, under a pixel
        nn.init.normal_(layer.offset.bias, std=0.3)
    out = layer(x)[0]
    (captured,) = capture_deform_layers(nn.Sequential(layer), x)
    assert captured.offsets.abs().max() > 0.1
    for point in [(3, 4), (6, 6), (8, 3)]:  # inside: all four bilinear neighbours exist
        sampled = out[:, point[0], point[1]].view(9, 2)
        assert torch.allclose(compose([captured], point), sampled, atol=1e-9)


def test_a_chain_broken_by_a_spatial_layer_is_refused():
    plain = nn.Conv2d(2, 2, 3, padding=1)  # widens the field between the two: positions do not compose
    model = nn.Sequential(DeformConv2d(2, 2, 3, padding=1), plain, DeformConv2d(2, 2, 3))
    with pytest.raises(CnnlabError, match="does not read"):
        offset_study(model, torch.randn(1, 2, 8, 8), layers=2)


@pytest.fixture(scope="module")
def dcn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dcn"
    # Digits resized to 16x16: a third of the work of 28x28, so one epoch takes seconds, and the image
    # file below (28x28) goes through the run's resize as a user's image would.
    fit(TrainConfig(model="dcn_resnet20", epochs=1, image_size=16, out=str(out)), quiet=True)
    return out


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    from cnnlab.data import load

    path = tmp_path_factory.mktemp("images") / "digit.png"
    Image.fromarray(load("mnist5k").test_images[0, 0].numpy(), mode="L").save(path)
    return path


@pytest.mark.slow
def test_analyze_offsets_from_the_command_line(cli, dcn_run, digit, tmp_path):
    proc = cli(
        "analyze", "offsets", str(dcn_run), str(digit), "--out", str(tmp_path), "--json",
        "--point", "2,2", "--point", "0,3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r == json.loads((tmp_path / "offsets.json").read_text()) | {"files": r["files"]}
    assert (tmp_path / "offsets.png").stat().st_size > 10_000
    assert [lay["name"] for lay in r["layers"]] == ["layer3.1.conv2", "layer3.2.conv1", "layer3.2.conv2"]
    assert [lay["input_stride"] for lay in r["layers"]] == [4, 4, 4]  # 16x16 -> 4x4 in stage 3
    assert [p["point"] for p in r["points"]] == [[2, 2], [0, 3]]
    assert r["points"][0]["point_px"] == [8, 8] and r["points"][1]["point_px"] == [0, 12]
    for p in r["points"]:
        sampled, grid = torch.tensor(p["sampled"]), torch.tensor(p["regular"])
        assert sampled.shape == grid.shape == (9**3, 2) and r["samples_per_point"] == 729
        # The regular grid: three 3x3 convs on a stride-4 map reach 3 units, 12 px, each way.
        centre = torch.tensor(p["point_px"])
        assert (grid - centre).abs().max() == 12 and torch.equal(grid % 4, torch.zeros_like(grid))
        # Each layer adds a tap in {-1, 0, 1} units per axis (variance 2/3): 3 layers, 2 axes, 4 px a unit.
        assert p["regular_spread_px"] == pytest.approx(4 * math.sqrt(3 * 2 / 3 * 2))
        # One epoch moves the points off the grid by several pixels (measured: ~11-13 px on average,
        # the farthest ~28 px from the unit); not off into nowhere: within 4 grid reaches of the unit.
        assert p["mean_shift_px"] > 0.1 and not torch.equal(sampled, grid)
        assert sampled.isfinite().all() and (sampled - centre).abs().max() < 4 * 12
        assert p["spread_ratio"] == pytest.approx(p["spread_px"] / p["regular_spread_px"])
        for lay in p["layers"]:
            assert lay["mean_offset_image_px"] == pytest.approx(4 * lay["mean_offset_map_px"])


@pytest.mark.slow
def test_default_points_and_errors(dcn_run, digit, tmp_path):
    r = analyze_offsets(dcn_run, digit, tmp_path, layers=1)
    assert 1 <= len(r["points"]) <= 3 and r["samples_per_point"] == 9
    assert r["points"][0]["why"] == "strongest activation"
    with pytest.raises(CnnlabError, match="off the 4x4 output map"):
        analyze_offsets(dcn_run, digit, tmp_path, points=[(4, 0)])
    with pytest.raises(CnnlabError, match=r"--layers must be 1\.\.4"):
        analyze_offsets(dcn_run, digit, tmp_path, layers=5)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(CnnlabError, match="cannot read image"):
        analyze_offsets(dcn_run, bad, tmp_path)


@pytest.mark.slow
def test_a_run_without_deformable_layers_is_refused(cli, trained_run, digit, tmp_path):
    proc = cli("analyze", "offsets", str(trained_run), str(digit), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "no deformable convolutions" in proc.stderr
