"""fuse_for_inference: BN folded into the conv before it, the same outputs, the caller's model untouched."""

from __future__ import annotations

import pytest
import torch
from helpers import relative_difference
from torch import nn

import cnnlab
from cnnlab.data.augment import Normalize
from cnnlab.errors import InputSizeError
from cnnlab.evaluate import evaluate
from cnnlab.fuse import conv_bn_pairs, fuse_for_inference
from cnnlab.layers import ConvBNAct, DeformConv2d
from cnnlab.predict import evaluate_run, predict_files, run_dataset

TOLERANCE = 1e-5  # max abs difference / max abs output


def batchnorms(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) is nn.BatchNorm2d]


def randomize(model: nn.Module) -> nn.Module:
    """Every BN given random statistics and affine parameters, and DeformConv2d random offsets: at the
    default init (mean 0, var 1, weight 1, bias 0) folding is nearly the identity and proves nothing."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                if m.running_mean is not None:
                    m.running_mean.uniform_(-1, 1)
                    m.running_var.uniform_(0.25, 4)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
            elif isinstance(m, DeformConv2d):
                m.offset.weight.normal_(0, 0.05)  # offsets of about a pixel
    return model


# name: (input side, BNs left after fusion: None = those named below, see the test)
FAMILIES = {
    "resnet18": (32, 0),
    "resnet50": (32, 0),
    "resnet20": (16, 0),
    "plain20": (16, 0),
    "se_resnet20": (16, 0),
    "dcn_resnet20": (16, 0),
    "vgg11_bn": (32, 0),
    "vgg11": (32, 0),
    "alexnet": (63, 0),
    "googlenet": (32, 2),  # the auxiliary heads' BNs: eval mode never calls them
    "densenet121": (32, None),
    "efficientnet_b0": (32, 0),
    "simple_cnn": (16, 0),
    "linear": (16, 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_fused_model_computes_the_same_outputs(name):
    side, left = FAMILIES[name]
    torch.manual_seed(0)
    model = randomize(cnnlab.create_model(name, num_classes=10, in_chans=3)).eval()
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected = model(x)  # also fixes the linear classifier's lazily sized weight before the copy
    fused = fuse_for_inference(model)
    with torch.no_grad():
        got = fused(x)
    assert relative_difference(got, expected) < TOLERANCE

    bns = batchnorms(model)
    if not bns:  # nothing to fold: the very same computation
        assert torch.equal(expected, got)
    if left is None:  # DenseNet: only the stem's BN and each bottleneck's norm2 follow a conv
        kept = [n for n in bns if n != "features.norm0" and not n.endswith(".norm2")]
        assert batchnorms(fused) == kept and len(kept) == 58 + 3 + 1
    else:
        assert len(batchnorms(fused)) == left

    # Each folded BN loses its weight and bias and becomes an Identity; a conv without bias gets one.
    folded = len(bns) - len(batchnorms(fused))
    identities = sum(isinstance(m, nn.Identity) for m in model.modules())
    assert sum(isinstance(m, nn.Identity) for m in fused.modules()) == identities + folded
    pairs = conv_bn_pairs(model.eval())
    assert len(pairs) == folded
    bn_params = sum(model.get_submodule(bn).num_features * 2 for _, bn in pairs)
    new_biases = sum(
        model.get_submodule(conv).out_channels for conv, _ in pairs if model.get_submodule(conv).bias is None
    )
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(fused) == count(model) - bn_params + new_biases


@pytest.mark.parametrize("name", ["resnet20", "dcn_resnet20", "efficientnet_b0"])
def test_channels_last_form_computes_the_same_outputs(name):
    torch.manual_seed(0)
    model = randomize(cnnlab.create_model(name, num_classes=10)).eval()
    x = torch.randn(2, 3, 32, 32)
    fused = fuse_for_inference(model, channels_last=True)
    assert fused.get_submodule(conv_bn_pairs(model)[0][0]).weight.is_contiguous(
        memory_format=torch.channels_last
    )
    with torch.no_grad():
        assert relative_difference(fused(x), model(x)) < TOLERANCE  # an NCHW input is taken as it is


def test_caller_model_is_unchanged():
    torch.manual_seed(0)
    model = randomize(cnnlab.create_model("resnet20", num_classes=10)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert model.training and not fused.training
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert len(batchnorms(model)) == 19 and not batchnorms(fused)


def test_fused_model_keeps_its_class_attributes_and_input_check():
    model = cnnlab.create_model("resnet20", num_classes=10, in_chans=1)
    model.data_config = {"input_size": [1, 28, 28]}
    fused = fuse_for_inference(model)
    assert type(fused) is type(model) and fused.data_config == model.data_config
    assert fused.min_input_size == model.min_input_size
    with pytest.raises(InputSizeError, match="1-channel"):
        fused(torch.zeros(1, 3, 28, 28))
    # The block and the conv-BN-ReLU read as before, with an Identity where the BN was.
    block = fused.layer1[0]
    assert isinstance(block.bn1, nn.Identity) and block.conv1.bias is not None


class ConvUsedTwice(nn.Module):
    """bn(conv(x)) + conv(x) with one output: folding would change the second use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class SharedBN(nn.Module):
    """One BN after two different convs: it cannot be folded into both."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.bn = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv1(x)) + self.bn(self.conv2(x))


class DataDependent(nn.Module):
    """A forward fx cannot trace (a branch on a tensor value) around blocks it can."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = ConvBNAct(3, 4), ConvBNAct(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        return self.b(x) if x.sum() > 0 else -self.b(x)


@pytest.mark.parametrize(
    ("module", "left"),
    [
        (ConvUsedTwice(), 1),
        (SharedBN(), 1),
        (nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 3)), 1),  # pre-activation
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)), 1),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.BatchNorm2d(4)), 1),
        (DataDependent(), 0),  # not traceable as a whole: fused block by block
    ],
    ids=["conv-used-twice", "shared-bn", "bn-before-conv", "no-running-stats", "pool-between", "untraceable"],
)
def test_only_bn_right_after_a_conv_is_folded(module, left):
    torch.manual_seed(0)
    model = randomize(module).eval()
    x = torch.randn(2, 3, 8, 8)
    fused = fuse_for_inference(model)
    assert len(batchnorms(fused)) == left
    with torch.no_grad():
        assert relative_difference(fused(x), model(x)) < TOLERANCE


@pytest.mark.slow
def test_evaluate_run_and_predict_files_give_the_unfused_numbers(trained_run, tmp_path):
    # On torch in fp32: what fusion alone changes (tests/test_infer.py checks the other engines).
    result = evaluate_run(trained_run, device="cpu", backend="torch", precision="fp32")
    model = cnnlab.load_run(trained_run)
    dataset = run_dataset(trained_run)
    cfg = model.data_config
    normalize = Normalize(tuple(cfg.mean), tuple(cfg.std))
    plain = evaluate(model, dataset.test_images, dataset.test_labels, normalize, torch.device("cpu"))
    assert result["test_acc"] == plain["top1"] and result["test_top5"] == plain["top5"]
    assert result["test_loss"] == pytest.approx(plain["loss"], rel=TOLERANCE)

    from PIL import Image

    path = tmp_path / "digit.png"
    Image.fromarray(dataset.test_images[0, 0].numpy()).save(path)
    top = predict_files(trained_run, [str(path)], 3, "cpu", "torch", "fp32")[0]["top"]
    with torch.no_grad():
        probs = model(normalize(dataset.test_images[:1])).softmax(1)[0]
    assert [t["index"] for t in top] == probs.topk(3).indices.tolist()
    assert [t["prob"] for t in top] == pytest.approx(probs.topk(3).values.tolist(), rel=TOLERANCE)
