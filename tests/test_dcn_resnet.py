"""Deformable ResNets: the offsets sit where the DCN paper puts them and start as the plain network."""

import pytest
import torch

import cnnlab
from cnnlab.layers import DeformConv2d
from cnnlab.models import num_params
from cnnlab.train import TrainConfig
from cnnlab.train.config import apply_recipe
from cnnlab.train.schedule import make_optimizer


@pytest.mark.parametrize(
    ("name", "base", "deformable", "channels"),
    [("dcn_resnet50", "resnet50", 3, [512] * 3), ("dcn_resnet20", "resnet20", 6, [32] + [64] * 5)],
)
def test_only_the_last_stage_is_deformable(name, base, deformable, channels):
    model = cnnlab.create_model(name, num_classes=10)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, DeformConv2d)]
    assert len(convs) == deformable
    last_stage = f"layer{len(model.stages)}."
    assert all(n.startswith(last_stage) for n, _ in convs)
    # Each deformable 3x3 conv adds an offset conv predicting 18 values (2 per tap) from its input.
    extra = sum(c * 18 * 9 + 18 for c in channels)
    assert num_params(name, num_classes=10) == num_params(base, num_classes=10) + extra


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "base", "size"), [("dcn_resnet20", "resnet20", 32), ("dcn_resnet50", "resnet50", 64)]
)
def test_a_new_deformable_resnet_computes_the_plain_resnet(name, base, size):
    torch.manual_seed(0)
    plain = cnnlab.create_model(base, num_classes=10).eval()
    dcn = cnnlab.create_model(name, num_classes=10).eval()
    missing, unexpected = dcn.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".offset." in k for k in missing)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(dcn(x), plain(x), rtol=1e-4, atol=1e-4)


def test_offsets_learn():
    torch.manual_seed(0)
    model = cnnlab.create_model("dcn_resnet20", num_classes=10, in_chans=1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 16, 16)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    offset = model.layer3[0].conv1.offset.weight
    assert offset.grad is not None and offset.grad.abs().sum() > 0


def test_offsets_train_at_a_tenth_of_the_rate():
    model = cnnlab.create_model("dcn_resnet20", num_classes=10)
    settings = apply_recipe(TrainConfig(model="dcn_resnet20"))
    optimizer, _ = make_optimizer(model, settings, total_steps=10, warmup_steps=0)
    base, offsets = optimizer.param_groups
    assert base["lr"] == pytest.approx(10 * offsets["lr"])
    offset_params = {
        id(p) for m in model.modules() if isinstance(m, DeformConv2d) for p in m.offset.parameters()
    }
    assert {id(p) for p in offsets["params"]} == offset_params
    assert len(base["params"]) + len(offsets["params"]) == len(list(model.parameters()))


def test_deformable_layer_samples_in_fp32_under_autocast():
    torch.manual_seed(0)
    layer = DeformConv2d(4, 4, 3, padding=1)
    torch.nn.init.normal_(
        layer.offset.weight, std=0.3
    )  # fractional offsets, where bf16 positions would drift
    x = torch.randn(1, 4, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16())
    assert out.dtype == torch.float32
    assert torch.allclose(out, layer(x.bfloat16().float()), atol=1e-5)
