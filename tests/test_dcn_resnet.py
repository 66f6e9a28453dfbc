"""Deformable ResNets: the offsets sit where the DCN paper puts them and start as the plain network."""

import pytest
import torch

import cnnlab
from cnnlab.layers import DeformConv2d
from cnnlab.models import num_params


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
