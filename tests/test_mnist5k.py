"""The embedded mnist5k dataset and the dataset entry point."""

import pytest
import torch

from cnnlab import data
from cnnlab.data.base import channel_stats, stratified_split
from cnnlab.errors import UnknownNameError


def test_mnist5k_is_a_fixed_stratified_4000_1000_split():
    d = data.load("mnist5k")
    assert d.train_images.shape == (4000, 1, 28, 28) and d.test_images.shape == (1000, 1, 28, 28)
    assert d.train_images.dtype == torch.uint8
    assert torch.bincount(d.train_labels).tolist() == [400] * 10
    assert torch.bincount(d.test_labels).tolist() == [100] * 10
    assert d.classes == [str(i) for i in range(10)] and not d.hflip
    # Real digits: mostly black background, bright strokes, MNIST's well-known mean of about 0.13.
    assert 0.10 < d.mean[0] < 0.16 and d.train_images.max() == 255
    again = data.load("mnist5k")
    assert torch.equal(d.test_images, again.test_images)


def test_mnist5k_train_and_test_share_no_image():
    d = data.load("mnist5k")
    train = {bytes(x.numpy()) for x in d.train_images}
    assert not any(bytes(x.numpy()) in train for x in d.test_images)


def test_stratified_split_is_deterministic_and_disjoint():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    train, test = stratified_split(labels, 0.2, seed=0)
    assert set(train.tolist()).isdisjoint(test.tolist()) and len(train) + len(test) == 16
    assert torch.bincount(labels[test], minlength=3).tolist() == [2, 1, 0]
    assert torch.equal(test, stratified_split(labels, 0.2, seed=0)[1])


def test_channel_stats_match_torch():
    x = torch.randint(0, 256, (9, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(x, chunk=4)
    f = x.double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), f.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), f.std((0, 2, 3), unbiased=False), atol=1e-6)


def test_unknown_dataset_name_suggests():
    with pytest.raises(UnknownNameError, match="cifar10"):
        data.load("cifar-1O")
