"""The gradient norms per layer that the aux and vanishing experiments measure (experiments/gradients.py)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.augment import Normalize
from cnnlab.data.base import Dataset
from cnnlab.experiments.gradients import (
    TOTAL,
    conv_layers,
    gradient_observer,
    layer_gradient_norms,
    probe_batch,
    seed_band,
)
from cnnlab.models import create_model


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"loss": F.mse_loss(outputs, targets)}


@pytest.fixture
def two_layer() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False)).double()
    return net, torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)


def hand_gradients(net: nn.Sequential, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dW1 and dL/dW2 of L = mean((relu(x W1^T) W2^T - t)^2), by the chain rule in matrices."""
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    z = x @ w1.T
    h = z.clamp(min=0)
    y = h @ w2.T
    dy = 2 * (y - t) / y.numel()
    dz = (dy @ w2) * (z > 0)
    return dz.T @ x, dy.T @ h


def test_norms_equal_the_hand_computation_on_a_two_layer_net(two_layer):
    net, x, t = two_layer
    g1, g2 = hand_gradients(net, x, t)
    norms = layer_gradient_norms(net, x, t, mse, ["0", "2"])
    assert list(norms) == [TOTAL]  # one part: the total alone
    assert norms[TOTAL]["0"] == pytest.approx(torch.sqrt((g1**2).sum()).item(), rel=1e-12)
    assert norms[TOTAL]["2"] == pytest.approx(torch.sqrt((g2**2).sum()).item(), rel=1e-12)
    assert norms[TOTAL]["0"] != pytest.approx(norms[TOTAL]["2"])


def test_parts_and_their_total(two_layer):
    net, x, t = two_layer
    g1, _ = hand_gradients(net, x, t)
    hand = torch.sqrt((g1**2).sum()).item()

    def parts(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = F.mse_loss(outputs, targets)
        return {"a": loss, "b": -3 * loss}

    norms = layer_gradient_norms(net, x, t, parts, ["0"])
    assert set(norms) == {"a", "b", TOTAL}
    assert norms["a"]["0"] == pytest.approx(hand, rel=1e-12)
    assert norms["b"]["0"] == pytest.approx(3 * hand, rel=1e-12)
    # The total is the norm of the summed gradients (-2 g), not the sum of the norms (4 |g|).
    assert norms[TOTAL]["0"] == pytest.approx(2 * hand, rel=1e-12)


def test_a_layer_with_several_parameters_counts_them_all(two_layer):
    _, x, t = two_layer
    torch.manual_seed(1)
    net = nn.Linear(3, 2).double()
    norms = layer_gradient_norms(net, x, t, mse, [""])
    dy = 2 * (net(x).detach() - t) / t.numel()
    hand = torch.sqrt(((dy.T @ x) ** 2).sum() + (dy.sum(0) ** 2).sum()).item()
    assert norms[TOTAL][""] == pytest.approx(hand, rel=1e-12)


def test_train_mode_batch_statistics_and_the_model_left_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
    net[1].running_mean.fill_(3.0)  # far from the batch's statistics: train and eval mode differ
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    before = {k: v.clone() for k, v in net.state_dict().items()}

    def ce(outputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(outputs, labels)}

    got = layer_gradient_norms(net, x, y, ce, ["0"])[TOTAL]["0"]

    def reference(train: bool) -> float:
        clone = copy.deepcopy(net).train(train)
        F.cross_entropy(clone(x), y).backward()
        return clone[0].weight.grad.norm().item()

    assert got == pytest.approx(reference(True), rel=1e-5)
    assert got != pytest.approx(reference(False), rel=1e-2)
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_conv_layers_first_to_last():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1), nn.Flatten(), nn.LazyLinear(3)
    )
    assert conv_layers(net) == ["0", "2"]
    with torch.device("meta"):
        resnet20 = create_model("resnet20", num_classes=10, in_chans=1)
    names = conv_layers(resnet20)
    assert len(names) == 19  # the stem and 2 convs in each of 9 blocks: option-A shortcuts have none
    assert names[0] == "conv1" and names[1] == "layer1.0.conv1" and names[-1] == "layer3.2.conv2"


def tiny_data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.arange(20) % 2
    return Dataset("tiny", images, labels, images[:4], labels[:4], ["a", "b"], mean=(0.5,), std=(0.25,))


def test_probe_batch_is_fixed_and_normalized_as_the_trainer_does():
    data = tiny_data()
    images, labels = probe_batch(data, size=8)
    again, _ = probe_batch(data, size=8)
    assert images.shape == (8, 1, 4, 4) and torch.equal(images, again)
    # Each probe image is a normalized training image, with its own label.
    normalized = Normalize((0.5,), (0.25,))(data.train_images)
    for image, label in zip(images, labels, strict=True):
        match = [i for i in range(20) if torch.allclose(normalized[i], image)]
        assert len(match) == 1 and data.train_labels[match[0]] == label
    assert torch.allclose(normalized[0], (data.train_images[0].float() / 255 - 0.5) / 0.25, atol=1e-6)
    assert len(probe_batch(data, size=100)[1]) == 20  # never more than the training set


def test_observer_reports_every_conv_and_leaves_the_model_unchanged():
    data = tiny_data()
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 2), nn.Flatten(), nn.Linear(2, 2)
    )
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seen = gradient_observer(data, size=8)(net, 3)
    assert seen["epoch"] == 3 and seen["layers"] == ["0", "3"]
    assert set(seen[TOTAL]) == {"0", "3"} and all(v > 0 for v in seen[TOTAL].values())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_seed_band():
    mean, low, high = seed_band([[1.0, 2.0], [3.0, 6.0], [2.0, 1.0]])
    assert mean == [2.0, 3.0] and low == [1.0, 1.0] and high == [3.0, 6.0]
