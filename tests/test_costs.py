"""MACs, receptive fields and the `cnnlab analyze` analyses (src/cnnlab/analysis/)."""

import json

import pytest
import torch
from helpers import meta_model
from torch import nn

from cnnlab import create_model
from cnnlab.analysis.costs import count_macs, model_costs
from cnnlab.analysis.inception import inception_costs
from cnnlab.analysis.rf import effective_receptive_field, layer_receptive_fields, rf_window, vgg_comparison
from cnnlab.analysis.scaling import scaling_table
from cnnlab.analysis.summary import summarize
from cnnlab.cli import main

# --- MACs ---------------------------------------------------------------------------------------


def test_macs_of_one_conv_and_one_linear_follow_the_formulas():
    conv = nn.Conv2d(3, 8, 5, stride=2, padding=1)  # 17x17 -> (17 + 2 - 5) // 2 + 1 = 8
    assert count_macs(conv, (3, 17, 17)) == 8 * 3 * 5 * 5 * 8 * 8
    grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4)  # each output sees Cin / groups channels
    assert count_macs(grouped, (8, 6, 6)) == 16 * 2 * 3 * 3 * 6 * 6
    fc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    assert count_macs(fc, (3, 4, 4)) == 48 * 10


# Reference: /tmp/refenv/bin/python /work/shared/tools/reference.py macs tv:NAME [--size N]
# (torchvision's models through torch.utils.flop_counter, FLOPs / 2).
@pytest.mark.parametrize(
    ("name", "size", "macs"),
    [("resnet18", 224, 1_814_073_344), ("resnet50", 224, 4_089_184_256), ("googlenet", 224, 1_498_376_192)],
)
def test_model_macs_equal_torchvisions(name, size, macs):
    assert count_macs(meta_model(name), (3, size, size)) == macs


def test_per_layer_macs_add_up_to_the_total():
    costs = model_costs(meta_model("resnet18"), (3, 224, 224))
    assert costs["layers"]["conv1"]["macs"] == 64 * 3 * 7 * 7 * 112 * 112
    assert costs["layers"]["fc"]["macs"] == 512 * 1000
    assert costs["layers"]["bn1"]["macs"] == 0
    assert sum(layer["macs"] for layer in costs["layers"].values()) == costs["macs"]


# --- receptive fields ---------------------------------------------------------------------------


# By hand, rf' = rf + (k - 1) * jump, jump' = jump * stride:
# resnet18: conv1 7/2 -> 7 (j2); maxpool 3/2 -> 11 (j4); layer1 4 convs -> 43; layer2 3x3/2 -> 51 (j8),
#   3 convs -> 99; layer3 -> 115 (j16) -> 211; layer4 -> 243 (j32) -> 435.
# vgg16: 5 -> pool 6 (j2) -> 14 -> 16 (j4) -> 40 -> 44 (j8) -> 92 -> 100 (j16) -> 196 -> 212 (j32).
# alexnet: 11/4 -> 11 (j4); pool 3/2 -> 19 (j8); 5x5 -> 51; pool -> 67 (j16); three 3x3 -> 163;
#   pool -> 195 (j32).
# resnet20 (CIFAR): 3; 6 convs -> 15; 3x3/2 -> 17 (j2), 5 convs -> 37; 3x3/2 -> 41 (j4), 5 convs -> 81.
@pytest.mark.parametrize(
    ("name", "size", "rf", "stride"),
    [
        ("resnet18", 224, 435, 32),
        ("vgg16", 224, 212, 32),
        ("alexnet", 224, 195, 32),
        ("resnet20", 32, 81, 4),
        ("resnet50", 224, 427, 32),
    ],
)
def test_analytic_receptive_fields(name, size, rf, stride):
    _, final = layer_receptive_fields(meta_model(name), (3, size, size))
    assert (final.size, final.stride) == (rf, stride)


def test_deformable_convs_count_their_nominal_grid():
    # The bilinear sampling of a deformable conv is a gather the op rules cannot see through; the
    # layer is given the field of its zero-offset grid, so the net's RF is its plain twin's (81).
    torch.manual_seed(0)
    _, final = layer_receptive_fields(create_model("dcn_resnet20"), (3, 32, 32), device="cpu")
    assert (final.size, final.stride) == (81, 4)


def test_crops_and_subsampling_slices_keep_the_map():
    class CropThenSubsample(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.conv2d(x[:, :, 2:-2, 2:-2][:, :, ::2, ::2], torch.ones(1, 1, 3, 3))

    _, final = layer_receptive_fields(CropThenSubsample(), (1, 20, 20), device="cpu")
    # 1-pixel field at jump 2 starting at pixel 2; the 3x3 conv: 1 + 2 * 2 = 5, centred on 2 + 2 = 4.
    assert (final.size, final.stride, final.start) == (5, 2, (4, 4)) and final.spatial


def test_three_3x3_convs_see_what_one_7x7_sees_with_fewer_weights():
    stacks = {row["stack"]: row for row in vgg_comparison(channels=32)["stacks"]}
    assert stacks["3x3 x3"]["receptive_field"] == stacks["7x7 x1"]["receptive_field"] == 7
    assert stacks["3x3 x3"]["weights"] == 27 * 32**2 and stacks["7x7 x1"]["weights"] == 49 * 32**2


class Branchy(nn.Module):
    """A stem, two parallel branches (a dilated 5x5, and an average pool then a 1x1) concatenated, a
    residual addition, and a strided conv. By hand: stem 3x3/2 -> 3 (j2); dilated branch
    3 + 2 * 4 * 2 = 19; pool branch 3 + 2 * 2 = 7; concatenation and addition: the larger, 19;
    last 3x3/2: 19 + 2 * 2 = 23 (j4)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.dilated = nn.Conv2d(4, 4, 5, padding=4, dilation=2)
        self.pooled = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(4, 4, 1))
        self.last = nn.Conv2d(8, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        y = torch.cat([self.dilated(x), self.pooled(x)], 1) + x.repeat(1, 2, 1, 1)
        return self.last(torch.relu(y)).mean((2, 3))


def positive_constant_weights(model: nn.Module) -> nn.Module:
    """Every conv/linear weight 1 / fan-in, biases 0, BN at its initial (identity-like) eval state: with a
    positive input every activation is positive, so the gradient of an output unit w.r.t. the input is
    non-zero exactly on its receptive field (no cancellation, no dead ReLUs)."""
    model = model.double().eval()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@pytest.mark.parametrize(("name", "size", "rf"), [("branchy", 48, 23), ("resnet20", 128, 81)])
def test_gradient_support_is_exactly_the_analytic_receptive_field(name, size, rf):
    torch.manual_seed(0)
    model = Branchy() if name == "branchy" else create_model(name, num_classes=10, in_chans=1)
    model = positive_constant_weights(model)
    x = torch.rand(2, 1, size, size, dtype=torch.float64) + 0.5
    grad, theory, centre, _ = effective_receptive_field(model, x)
    assert theory.size == rf
    rows, cols = torch.nonzero(grad > 0, as_tuple=True)
    top, left, height, _ = rf_window(theory, centre)
    assert top >= 0 and top + height <= size  # the field lies inside the image: no clipping by padding
    assert (rows.min().item(), cols.min().item()) == (top, left)
    assert (rows.max().item() - rows.min().item() + 1, cols.max().item() - cols.min().item() + 1) == (rf, rf)


def test_summary_has_macs_and_receptive_fields_per_layer_and_in_total():
    s = summarize("resnet18")
    assert s["params"] == 11_689_512 and s["macs"] == 1_814_073_344 and s["receptive_field"] == 435
    conv1 = s["layers"][0]
    assert (conv1["name"], conv1["macs"], conv1["receptive_field"], conv1["stride"]) == (
        "conv1",
        118_013_952,
        7,
        2,
    )
    assert s["layers"][-1]["name"] == "fc" and s["layers"][-1]["receptive_field"] is None  # pooled: global


# --- Inception and EfficientNet -----------------------------------------------------------------


def test_inception_reductions_save_macs_in_every_module():
    r = inception_costs()
    modules = {m["module"]: m for m in r["modules"]}
    assert list(modules) == ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
    assert all(m["macs_ratio"] > 1 and m["params_ratio"] > 1 for m in modules.values())
    # 3a by hand, input 192x28x28 (784 positions), "5x5" branch a 3x3 as built. Per position:
    # with: 192*64 + 192*96 + 96*128*9 + 192*16 + 16*32*9 + 192*32 = 155,136 -> x784 = 121,626,624;
    # without: 192*64 + 192*128*9 + 192*32*9 = 288,768 -> x784 = 226,394,112 (ratio 1.861).
    # Parameters: the same conv weights plus BN's 2 per channel: 155,136 + 2*368, 288,768 + 2*224.
    a = modules["3a"]
    assert a["input"] == [192, 28, 28] and (a["macs"], a["macs_without"]) == (121_626_624, 226_394_112)
    assert (a["params"], a["params_without"]) == (155_872, 289_216)
    assert a["out_channels"] == 256 and a["out_channels_without"] == 64 + 128 + 32 + 192


def test_scaling_rows_match_the_variants_own_numbers():
    r = scaling_table([0, 7])
    b0, b7 = r["rows"]
    # Reference MACs of tv:efficientnet_b0 at 224 and tv:efficientnet_b7 at 600.
    assert (b0["macs"], b7["macs"]) == (385_814_752, 37_745_884_192)
    assert b7["params"] == 66_347_960 and b7["released_resolution"] == 600
    assert (b7["depth_mult"], b7["width_mult"], b7["resolution_mult"]) == (1.2**7, 1.1**7, 1.15**7)
    assert (b7["released_depth"], b7["released_width"]) == (3.1, 2.0)
    assert b7["macs_vs_b0"] == pytest.approx(97.83, abs=0.01)  # the paper aims at 2^7 = 128


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_summary_json_has_macs_and_receptive_field(cli):
    proc = cli("summary", "resnet18", "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["macs"] == 1_814_073_344 and s["receptive_field"] == 435 and s["stride"] == 32
    assert all("macs" in layer and "receptive_field" in layer for layer in s["layers"])


@pytest.mark.slow
def test_cli_analyze_rf_writes_json_and_png(cli, tmp_path):
    proc = cli(
        "analyze", "rf", "vgg11", "--input", "3x64x64", "--images", "2", "--out", str(tmp_path), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)  # the one JSON object, nothing else on stdout
    assert r.pop("files") == {"json": str(tmp_path / "rf.json"), "png": str(tmp_path / "rf.png")}
    assert r == json.loads((tmp_path / "rf.json").read_text())
    assert (tmp_path / "rf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # vgg11: 3 -> 4 (j2) -> 8 -> 10 (j4) -> 18 -> 26 -> 30 (j8) -> 46 -> 62 -> 70 (j16) -> 102 -> 134 -> 150
    assert (r["receptive_field"], r["stride"], r["feature_map"]) == (150, 32, [2, 2])
    assert [row["weights_per_c2"] for row in r["vgg"]["stacks"]] == [27, 49]


@pytest.mark.slow
def test_cli_analyze_inception_and_scaling_write_their_files(tmp_path, capsys):
    assert main(["analyze", "inception", "--out", str(tmp_path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["modules"][0]["macs"] == 121_626_624
    assert main(["analyze", "scaling", "--max-phi", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "efficientnet" in out.lower() or "compound" in out.lower()
    for name in ("inception", "scaling"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert [row["phi"] for row in json.loads((tmp_path / "scaling.json").read_text())["rows"]] == [0, 1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["analyze", "rf", "resnet18", "--input", "3x16x16"], "at least 32x32"),
        (["analyze", "rf", "resnet2"], "unknown model"),
        (["analyze", "scaling", "--max-phi", "9"], "0..7"),
    ],
)
def test_analyze_user_errors_are_one_line(tmp_path, capsys, args, needle):
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
