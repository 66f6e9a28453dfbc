"""MixUp and CutMix: each sample's mixing is a function of (seed, epoch, index), the images are mixed as
the plan says, and the loss is cross-entropy against the mixed soft target."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.augment import batches, plan_epoch
from cnnlab.data.mix import mix_images, mixed_batches, plan_mix
from cnnlab.loss import classification_loss

N, SIDE = 24, 12


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (N, 3, SIDE, SIDE), dtype=torch.uint8, generator=g), torch.arange(N) % 5


def _plans(mixup=0.4, cutmix=1.0, epoch=1):
    plan = plan_epoch(N, 7, epoch, 2, True)
    return plan, plan_mix(plan.order, N, 7, epoch, (SIDE, SIDE), mixup, cutmix)


def test_each_sample_is_mixed_with_the_next_in_the_epoch_order():
    plan, mix = _plans()
    order = plan.order.tolist()
    assert [mix.partner[i].item() for i in order] == order[1:] + order[:1]
    assert bool(((mix.lam >= 0) & (mix.lam <= 1)).all())
    # With both on, about half of each: 24 draws at even odds.
    assert 0 < int(mix.cut.sum()) < N


def test_a_cutmix_share_is_the_area_its_box_leaves():
    _, mix = _plans(mixup=None, cutmix=1.0)
    assert bool(mix.cut.all())
    top, left, h, w = mix.boxes.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (top + h <= SIDE) & (left + w <= SIDE)).all())
    torch.testing.assert_close(mix.lam, 1 - (h * w).float() / SIDE**2)


def test_the_draws_depend_on_seed_and_epoch_alone():
    (_, a), (_, b), (_, c) = _plans(), _plans(), _plans(epoch=2)
    assert torch.equal(a.lam, b.lam) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.lam, c.lam)


def test_mixup_blends_and_cutmix_pastes_the_box():
    g = torch.Generator().manual_seed(1)
    x, other = (torch.randint(0, 256, (2, 1, 6, 6), dtype=torch.uint8, generator=g) for _ in range(2))
    lam = torch.tensor([0.25, 0.0])
    boxes = torch.tensor([[0, 0, 0, 0], [1, 2, 3, 2]])
    out = mix_images(x, other, lam, torch.tensor([False, True]), boxes)
    assert torch.equal(out[0], (0.25 * x[0].float() + 0.75 * other[0].float()).round().to(torch.uint8))
    expected = x[1].clone()
    expected[:, 1:4, 2:4] = other[1][:, 1:4, 2:4]
    assert torch.equal(out[1], expected)


@pytest.mark.parametrize("ranks", [1, 2])
def test_a_sample_is_mixed_alike_whatever_the_batch_size_and_processes(ranks):
    images, labels = _images()
    plan, mix = _plans()

    def by_sample(batch_size: int) -> dict[int, tuple[torch.Tensor, float]]:
        xs, shares = [], []
        for rank in range(ranks):
            for x, _, _, lam in mixed_batches(images, labels, batch_size, plan, mix, rank, ranks):
                xs.append(x)
                shares.append(lam)
        mixed = zip(torch.cat(xs), torch.cat(shares).tolist(), strict=False)
        return dict(zip(_sample_order(plan.order, batch_size, ranks), mixed, strict=False))

    small, large = by_sample(4), by_sample(8)
    assert small.keys() == large.keys() and len(small) == N
    for i, (image, share) in small.items():
        assert torch.equal(image, large[i][0]) and share == large[i][1]


def _sample_order(order: torch.Tensor, batch_size: int, ranks: int) -> list[int]:
    """The sample indices in the order ``by_sample`` meets them: rank by rank, batch by batch."""
    out = []
    for rank in range(ranks):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            part = len(idx) // ranks
            out += idx[rank * part : (rank + 1) * part].tolist()
    return out


def test_a_sample_without_mixing_is_the_plain_augmented_one():
    images, labels = _images()
    plan, mix = _plans(mixup=None, cutmix=None)  # neither on: every share is 1
    assert bool((mix.lam == 1).all())
    plain = torch.cat([x for x, _ in batches(images, labels, 8, plan, drop_last=True)])
    mixed = torch.cat([x for x, *_ in mixed_batches(images, labels, 8, plan, mix)])
    assert torch.equal(plain, mixed)


def test_the_mixed_loss_is_cross_entropy_against_the_soft_target():
    g = torch.Generator().manual_seed(2)
    logits, aux = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y, y2 = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 1, 3, 0, 2, 4])
    lam = torch.tensor([1.0, 0.5, 0.3, 0.9, 0.0, 0.6])
    smoothing = 0.1
    soft = lam[:, None] * F.one_hot(y, 5) + (1 - lam[:, None]) * F.one_hot(y2, 5)
    expected = F.cross_entropy(logits, soft, label_smoothing=smoothing) + 0.3 * F.cross_entropy(
        aux, soft, label_smoothing=smoothing
    )
    loss, main = classification_loss((logits, aux), y, smoothing, 0.3, mixed=(y2, lam))
    torch.testing.assert_close(loss, expected)
    assert main is logits
    # A share of 1 everywhere is the plain loss: the control.
    plain, _ = classification_loss(logits, y, smoothing, mixed=(y2, torch.ones(6)))
    torch.testing.assert_close(plain, F.cross_entropy(logits, y, label_smoothing=smoothing))
