"""`cnnlab convert`: torchvision and timm checkpoints as run directories, checked key by key."""

from __future__ import annotations

import copy
import gzip
import importlib.util
import json
import pathlib
import re
from pathlib import Path

import numpy
import pytest
import torch
from filled import filled_input, filled_state
from helpers import relative_difference
from safetensors.torch import save_file

from cnnlab import create_model, imagenet, load_run
from cnnlab.convert import convert_checkpoint, converted_model
from cnnlab.errors import CnnlabError


def seeded(name: str, num_classes: int, in_chans: int = 3) -> torch.nn.Module:
    """A cnnlab model with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def legacy_densenet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's 2017 DenseNet names: denselayer1.norm1.weight -> denselayer1.norm.1.weight."""
    return {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}


# (cnnlab model, --from, --model, num_classes, in_chans, rename to the reference names)
CASES = {
    "resnet18": ("resnet18", "torchvision", "resnet18", 1000, 3, None),
    "efficientnet_b0": ("efficientnet_b0", "torchvision", "efficientnet_b0", 10, 3, None),
    "densenet121": ("densenet121", "torchvision", "densenet121", 5, 3, legacy_densenet),
    "seresnet18": ("se_resnet18", "timm", "seresnet18", 7, 1, None),
}


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {case: seeded(c[0], c[3], c[4]) for case, c in CASES.items()}


def write_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("case", list(CASES))
def test_convert_round_trip(case: str, suffix: str, models, tmp_path: Path) -> None:
    name, source, ref_name, num_classes, in_chans, rename = CASES[case]
    model = models[case]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if rename:
        state = rename(state)
        assert set(state) != set(model.state_dict())  # the reference names really differ
    file = write_checkpoint(state, tmp_path / f"ckpt{suffix}")

    r = convert_checkpoint(source, ref_name, file, tmp_path / "run")
    assert (r["model"], r["num_classes"], r["in_chans"]) == (name, num_classes, in_chans)
    assert r["params"] == sum(p.numel() for p in model.parameters())

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    data = config["data"]
    assert data["name"] == ("imagenet" if num_classes == 1000 else "converted")
    assert len(data["classes"]) == num_classes
    assert data["input_size"] == list(model.default_input_size)
    assert data["hflip"] is True
    if in_chans == 3:
        assert data["mean"] == [0.485, 0.456, 0.406] and data["std"] == [0.229, 0.224, 0.225]

    loaded = load_run(tmp_path / "run")
    x = torch.randn(2, in_chans, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-5)


def test_efficientnet_input_size_is_its_resolution(tmp_path: Path) -> None:
    with torch.device("meta"):
        b3 = create_model("efficientnet_b3")
    assert b3.default_input_size == (3, 300, 300)  # what convert writes as input_size, as for b0 above


@pytest.mark.slow
def test_ddp_nested_and_old_checkpoint(models, tmp_path: Path) -> None:
    """`module.` prefixes, a {"state_dict": ...} wrapper, fp16 tensors, no num_batches_tracked."""
    model = models["resnet18"]
    state = {
        f"module.{k}": v.half() if v.is_floating_point() else v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    file = write_checkpoint({"state_dict": state, "epoch": 90}, tmp_path / "ddp.pth")
    convert_checkpoint("torchvision", "resnet18", file, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = copy.deepcopy(model).half().float()(x)  # the weights as fp16 rounded them
        torch.testing.assert_close(loaded(x), reference, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def resnet18_state(models) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in models["resnet18"].state_dict().items()}


def broken(state: dict[str, torch.Tensor], how: str) -> tuple[dict[str, torch.Tensor], str]:
    state = dict(state)
    if how == "missing":
        del state["layer3.1.conv2.weight"]
        return state, "layer3.1.conv2.weight"
    if how == "surplus":
        state["layer5.0.conv1.weight"] = torch.zeros(3, 3)
        return state, "layer5.0.conv1.weight"
    state["layer2.0.bn1.weight"] = torch.ones(100)
    return state, "layer2.0.bn1.weight"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["missing", "surplus", "shape"])
def test_mismatch_is_one_line_and_writes_nothing(how: str, resnet18_state, tmp_path: Path, cli) -> None:
    state, key = broken(resnet18_state, how)
    file = write_checkpoint(state, tmp_path / "bad.safetensors")
    out = tmp_path / "run"
    proc = cli("convert", "--from", "torchvision", "--model", "resnet18", str(file), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert {"missing": "1 missing", "surplus": "1 surplus", "shape": "another shape"}[how] in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_many_offending_keys_are_counted(resnet18_state, tmp_path: Path) -> None:
    state = {k: v for k, v in resnet18_state.items() if not k.startswith("layer4.")}
    file = write_checkpoint(state, tmp_path / "partial.pth")
    with pytest.raises(CnnlabError, match=r"missing: layer4\.\S+, .* and \d+ more; nothing was written"):
        convert_checkpoint("torchvision", "resnet18", file, tmp_path / "run")
    assert not (tmp_path / "run").exists()


class Trap:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.slow
def test_trapped_pickle_is_refused(tmp_path: Path, cli) -> None:
    victim = tmp_path / "pwned"
    file = tmp_path / "trap.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "x": Trap(victim)}, file)
    proc = cli(
        "convert", "--from", "torchvision", "--model", "resnet18", str(file), "--out", str(tmp_path / "r")
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to load" in lines[0], proc.stderr
    assert not victim.exists() and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cli_json_then_predict(models, tmp_path: Path, cli) -> None:
    from PIL import Image

    state = models["seresnet18"].state_dict()
    file = write_checkpoint(state, tmp_path / "seresnet18.safetensors")
    out = tmp_path / "run"
    proc = cli("convert", "--from", "timm", "--model", "seresnet18", str(file), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert (r["model"], r["num_classes"], r["in_chans"]) == ("se_resnet18", 7, 1)

    Image.new("L", (40, 30), 128).save(tmp_path / "gray.png")
    gray = str(tmp_path / "gray.png")
    proc = cli("predict", str(out), gray, "--json", "--device", "cpu", "--backend", "torch")
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)["predictions"][0]["top"]
    assert len(top) == 3 and top[0]["label"].startswith("class ")


def test_unknown_model_and_occupied_out(resnet18_state, tmp_path: Path) -> None:
    file = write_checkpoint(resnet18_state, tmp_path / "r.pth")
    with pytest.raises(CnnlabError, match="unknown model"):
        convert_checkpoint("torchvision", "resnet19", file, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    with pytest.raises(CnnlabError, match="not empty"):
        convert_checkpoint("torchvision", "resnet18", file, tmp_path / "b")


# --- Every listed architecture against torchvision and timm (fixtures of scripts/reference_fixtures.py)

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "reference_fixtures", ROOT / "scripts" / "reference_fixtures.py"
)
reference_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_fixtures)
SOURCE = {"tv": "torchvision", "timm": "timm"}


def read_fixture(name: str) -> dict:
    with gzip.open(reference_fixtures.fixture_path(name), "rt", encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("name", reference_fixtures.COVERAGE)
def test_reference_model_converts_with_equal_logits(name: str) -> None:
    """The reference model's keys, filled from their names, give the reference's logits in cnnlab."""
    fixture = read_fixture(name)
    source, _, arch = name.partition(":")
    model, built = converted_model(SOURCE[source], arch, filled_state(fixture["keys"]))
    assert built["num_classes"] == 1000 and built["in_chans"] == 3
    # Both in float64 (the fixture's dtype): in fp32 the logits of a deep net move by up to 1e-3 from
    # one CPU's kernels to another's, more than a small conversion error would.
    with torch.no_grad():
        logits = model.double()(filled_input(fixture["size"]).double())[0]
    assert fixture["dtype"] == "float64"
    assert relative_difference(logits, torch.tensor(fixture["logits"], dtype=torch.float64)) < 1e-9


@pytest.mark.slow
def test_timm_efficientnet_keeps_its_batchnorm_eps(tmp_path: Path) -> None:
    """timm's B5 has BN eps 1e-5 where torchvision's (and cnnlab's default) has 1e-3: the run records
    it, and load_run's model gives timm's logits, which cnnlab's default B5 would not."""
    fixture = read_fixture("timm:efficientnet_b5")
    file = write_checkpoint(filled_state(fixture["keys"]), tmp_path / "b5.safetensors")
    r = convert_checkpoint("timm", "efficientnet_b5", file, tmp_path / "run")
    assert r["model_kwargs"] == {"bn_eps": 1e-5, "bn_momentum": 0.1}
    x, expected = filled_input(fixture["size"]), torch.tensor(fixture["logits"])
    with torch.no_grad():
        assert relative_difference(load_run(tmp_path / "run")(x)[0], expected) < 1e-4
        default = create_model("efficientnet_b5")
        default.load_state_dict(load_run(tmp_path / "run").state_dict())
        assert relative_difference(default.eval()(x)[0], expected) > 1e-3


def test_googlenet_without_auxiliary_heads(tmp_path: Path) -> None:
    """torchvision drops the auxiliary heads from a pretrained GoogLeNet; its state_dict converts to a
    model without them, normalized as its Caffe-trained weights expect."""
    fixture = read_fixture("tv:googlenet")
    state = {k: v for k, v in filled_state(fixture["keys"]).items() if not k.startswith(("aux1.", "aux2."))}
    file = write_checkpoint(state, tmp_path / "googlenet.pth")
    r = convert_checkpoint("torchvision", "googlenet", file, tmp_path / "run")
    assert r["model_kwargs"] == {"aux_logits": False} and r["tensors"] == len(state)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["mean"] == [0.5] * 3 and config["data"]["std"] == [0.5] * 3
    with torch.no_grad():
        logits = load_run(tmp_path / "run")(filled_input(fixture["size"]))[0]
    assert relative_difference(logits, torch.tensor(fixture["logits"])) < 1e-4


@pytest.mark.slow
def test_predict_on_a_converted_imagenet_model_reads_like_torchvision(tmp_path: Path, cli) -> None:
    """ImageNet's names, and the image prepared as torchvision evaluates: shorter side to 256
    (bilinear), centre 224 crop, ImageNet mean and std."""
    from PIL import Image

    fixture = read_fixture("tv:resnet18")
    state = filled_state(fixture["keys"])
    file = write_checkpoint(state, tmp_path / "resnet18.pth")
    assert (
        cli(
            "convert",
            "--from",
            "torchvision",
            "--model",
            "resnet18",
            str(file),
            "--out",
            str(tmp_path / "run"),
        ).returncode
        == 0
    )

    rgb = torch.randint(0, 256, (300, 400, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    Image.fromarray(rgb.numpy()).resize((400, 300)).save(tmp_path / "photo.png")
    # On torch: the preprocessing is what this checks, and an ImageNet ResNet's ONNX export takes seconds.
    photo = str(tmp_path / "photo.png")
    proc = cli("predict", str(tmp_path / "run"), photo, "--json", "--device", "cpu", "--backend", "torch")
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)["predictions"][0]["top"]

    with Image.open(tmp_path / "photo.png") as im:
        im = im.convert("RGB").resize((341, 256), Image.BILINEAR).crop((58, 16, 282, 240))
    x = torch.from_numpy(numpy.asarray(im).copy()).permute(2, 0, 1).float().div(255)
    x = (x - torch.tensor(imagenet.MEAN)[:, None, None]) / torch.tensor(imagenet.STD)[:, None, None]
    model = create_model("resnet18")
    model.load_state_dict(state)
    with torch.no_grad():
        probs = model.eval()(x[None]).softmax(1)[0]
    expected = probs.topk(3)
    assert [t["index"] for t in top] == expected.indices.tolist()
    assert [t["label"] for t in top] == [imagenet.class_names()[i] for i in expected.indices]
    assert top[0]["prob"] == pytest.approx(expected.values[0].item(), abs=1e-4)


def test_imagenet_class_names() -> None:
    names = imagenet.class_names()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[1], names[999]) == ("tench", "goldfish", "toilet tissue")


def test_timm_and_torchvision_preprocessing() -> None:
    assert imagenet.preprocessing("torchvision", "resnet50") == imagenet.Preprocessing(224, 256)
    b3 = imagenet.preprocessing("torchvision", "efficientnet_b3")
    assert (b3.crop, b3.resize, b3.interpolation) == (300, 320, "bicubic")
    se = imagenet.preprocessing("timm", "seresnet50")  # crop_pct 0.95: floor(224 / 0.95)
    assert (se.crop, se.resize, se.interpolation) == (224, 235, "bicubic")


@pytest.mark.slow
def test_exported_converted_model_states_its_preprocessing(tmp_path: Path) -> None:
    from cnnlab.export import export_run

    fixture = read_fixture("tv:efficientnet_b0")
    file = write_checkpoint(filled_state(fixture["keys"]), tmp_path / "b0.pth")
    convert_checkpoint("torchvision", "efficientnet_b0", file, tmp_path / "run")
    export_run(tmp_path / "run", "torchscript", tmp_path / "b0.ts")
    meta = json.loads((tmp_path / "b0.ts.json").read_text())
    assert (meta["input_size"], meta["resize_size"], meta["interpolation"]) == ([3, 224, 224], 256, "bicubic")
    assert meta["classes"][:2] == ["tench", "goldfish"]
