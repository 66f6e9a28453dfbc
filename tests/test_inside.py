"""`cnnlab analyze cam`, `filters` and `features` (cnnlab.analysis.inside): Grad-CAM and saliency
against values worked out by hand, the layers and stages picked on known architectures, the rebuilt
initial filters against the weights a real training started from, and the command line."""

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import save_run
from PIL import Image
from torch import nn
from torch.testing import assert_close

from cnnlab import create_model
from cnnlab.analysis.inside import (
    analyze_filters,
    default_layer,
    feature_stages,
    grad_cam,
    initial_weights,
    saliency,
    trace_calls,
)
from cnnlab.cli import main as cnnlab_main
from cnnlab.errors import CnnlabError
from cnnlab.rundir import read_config
from cnnlab.train import TrainConfig, fit

PNG = b"\x89PNG\r\n\x1a\n"


def conv_gap_linear(inplace: bool = False) -> nn.Sequential:
    """CAM's network (Zhou et al. 2016): conv -> ReLU -> global average pool -> linear."""
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(2, 4, 3),
            nn.ReLU(inplace=inplace),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
        .double()
        .eval()
    )


def test_grad_cam_of_conv_gap_linear_is_cam_scaled_by_the_map_size():
    model = conv_gap_linear()
    x = torch.randn(1, 2, 7, 9, dtype=torch.float64)
    a = model[1](model[0](x))[0]  # (4, 5, 7): the ReLU's output, the map the linear layer pools
    h, w = a.shape[1:]
    for c in range(3):
        cam, logits = grad_cam(model, x, model[1], c)
        # dy_c/dA_k = w[c, k] / (h*w) at every position, so alpha_k = w[c, k] / (h*w).
        expected = F.relu((model[4].weight[c][:, None, None] * a).sum(0)) / (h * w)
        assert expected.max() > 0
        assert_close(cam, expected.detach())
        assert_close(logits, model(x)[0].detach())


def test_grad_cam_keeps_the_activation_an_inplace_relu_would_overwrite():
    model = conv_gap_linear(inplace=True)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    a = model[0](x)[0].detach()  # the conv's output, before the in-place ReLU clips it
    cam, _ = grad_cam(model, x, model[0], 1)
    # Through the ReLU, dy_c/dA_k = w[c, k] / (h*w) where A_k > 0, else 0.
    alpha = model[4].weight[1].detach() * (a > 0).double().mean(dim=(1, 2)) / a[0].numel()
    assert_close(cam, F.relu((alpha[:, None, None] * a).sum(0)))


def test_saliency_is_the_largest_input_gradient_over_channels():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 5, 3)).double()
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    for c in range(3):  # y_c = W[c] . x: the gradient is the row itself
        expected = linear[1].weight[c].detach().view(2, 4, 5).abs().amax(0)
        assert_close(saliency(linear, x, c), expected)
    model = conv_gap_linear()
    x = torch.randn(1, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(model(x)[0, 2], x)
    assert_close(saliency(model, x, 2), gradient[0].abs().amax(0))


@pytest.mark.parametrize(
    ("name", "chans", "side", "expected"),
    [("resnet20", 1, 28, "layer3"), ("googlenet", 3, 64, "inception5b")],
)
def test_the_default_layer_is_the_last_convolutional_stage(name, chans, side, expected):
    model = create_model(name, num_classes=10, in_chans=chans).eval()
    assert default_layer(trace_calls(model, torch.zeros(1, chans, side, side)), name) == expected


def test_a_map_enlarged_by_pooling_is_no_stage_and_all_1x1_is_refused():
    # As VGG's adaptive pool on a small input: the 3x3 ReLU map repeated to 7x7 adds no positions.
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(7)).eval()
    calls = trace_calls(model, torch.zeros(1, 1, 8, 8))
    assert default_layer(calls, "toy") == "1"
    assert [calls[i].name for i in feature_stages(calls)] == ["1"]
    with pytest.raises(CnnlabError, match="1x1"):
        default_layer(trace_calls(model, torch.zeros(1, 1, 3, 3)), "toy")


def test_the_stages_of_resnet20_on_digits():
    model = create_model("resnet20", num_classes=10, in_chans=1).eval()
    calls = trace_calls(model, torch.zeros(1, 1, 28, 28))
    stages = [(calls[i].name, calls[i].shape) for i in feature_stages(calls)]
    assert stages == [("layer1", (1, 16, 28, 28)), ("layer2", (1, 32, 14, 14)), ("layer3", (1, 64, 7, 7))]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch simple_cnn on mnist5k (~1 s of training), and its conv1 as the training started."""
    out = tmp_path_factory.mktemp("runs") / "simple_cnn"

    def first_filters(model: nn.Module, epoch: int) -> dict:
        return {"conv1": model.conv1.weight.detach().cpu().clone()} if epoch == 0 else {}

    result = fit(
        TrainConfig(model="simple_cnn", epochs=1, seed=3, out=str(out), device="cpu"),
        quiet=True,
        observe=first_filters,
    )
    return out, result["observed"][0]["conv1"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from cnnlab.data import load

    folder = tmp_path_factory.mktemp("images")
    digit = load("mnist5k").test_images[0, 0].numpy()
    Image.fromarray(digit, mode="L").save(folder / "digit.png")
    Image.fromarray(digit, mode="L").convert("RGB").resize((40, 40)).save(folder / "rgb.png")
    Image.new("L", (2, 2)).save(folder / "tiny.png")
    (folder / "text.png").write_text("not an image")
    return folder


@pytest.mark.slow
def test_the_rebuilt_initial_filters_are_where_training_started(run, tmp_path):
    path, started = run
    rebuilt, why_not = initial_weights(read_config(path), "conv1")
    assert why_not is None and torch.equal(rebuilt, started)
    r = analyze_filters(path, tmp_path)
    assert r["layer"] == "conv1" and r["weight_shape"] == [6, 1, 5, 5] and r["initial_available"]
    assert r["norms"]["initial"] == [round(v, 6) for v in started.flatten(1).norm(dim=1).tolist()]
    assert r["norms"]["trained"] != r["norms"]["initial"] and r["mean_cosine"] < 1
    untrained = save_run(
        create_model("resnet20", num_classes=2), tmp_path / "untrained", "resnet20", ["a", "b"], [3, 8, 8]
    )
    r = analyze_filters(untrained, tmp_path)  # a run without a recorded seed: trained filters only
    assert not r["initial_available"] and "seed" in r["initial_note"] and r["mean_cosine"] is None


@pytest.mark.slow
def test_the_three_analyses_from_the_command_line(cli, run, images, tmp_path, capsys):
    path = str(run[0])
    proc = cli("analyze", "cam", path, str(images / "digit.png"), str(images / "rgb.png"), "--class", "3",
               "--out", str(tmp_path), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["layer"] == "avgpool" and r["layer_default"] and r["layer_shape"] == [16, 5, 5]
    assert [row["image"] for row in r["images"]] == [str(images / "digit.png"), str(images / "rgb.png")]
    assert all(0 < row["class_prob"] < 1 and row["top_class"] in map(str, range(10)) for row in r["images"])
    assert r["images"][1]["notes"][0] == "RGB image converted to grayscale"
    assert json.loads((tmp_path / "cam.json").read_text()) | {"files": r["files"]} == r
    for name in ("filters", "features"):
        image = [str(images / "digit.png")] if name == "features" else []
        assert cnnlab_main(["analyze", name, path, *image, "--out", str(tmp_path), "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed == json.loads((tmp_path / f"{name}.json").read_text()) | {"files": printed["files"]}
    for name in ("cam", "filters", "features"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG)
    stages = json.loads((tmp_path / "features.json").read_text())["stages"]
    assert [(s["name"], s["shape"]) for s in stages] == [
        ("relu", [6, 28, 28]), ("pool", [6, 14, 14]), ("relu", [16, 10, 10]), ("avgpool", [16, 5, 5])
    ]  # fmt: skip
    assert all(len(s["shown_channels"]) == min(8, s["shape"][0]) for s in stages)


@pytest.mark.slow
def test_an_unknown_layer_is_one_line_naming_the_closest(cli, run, images, tmp_path):
    proc = cli(
        "analyze", "cam", str(run[0]), str(images / "digit.png"), "--layer", "conv3", "--out", str(tmp_path)
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "did you mean conv2, conv1" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "fc1"], "outputs a tensor of shape (1, 120), not an (N, C, H, W) feature map"),
        (["--class", "33"], "no class '33'; did you mean 3?"),
        (["IMAGE=tiny.png"], "tiny.png is 2x2 px, too small for simple_cnn's 28x28 input"),
        (["IMAGE=text.png"], "cannot read image"),
    ],
)
def test_bad_input_is_one_line(run, images, tmp_path, capsys, args, message):
    image = next((a[6:] for a in args if a.startswith("IMAGE=")), "digit.png")
    options = [a for a in args if not a.startswith("IMAGE=")]
    argv = ["analyze", "cam", str(run[0]), str(images / image), *options, "--out", str(tmp_path)]
    assert cnnlab_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "cam.json").exists()
