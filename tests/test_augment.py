"""Batched augmentation equals a per-sample reference, and its randomness depends only on
(seed, epoch, sample index)."""

import torch
import torch.nn.functional as F

from cnnlab.data.augment import Normalize, batches, hflip, plan_epoch, random_crop


def test_random_crop_equals_per_sample_reference():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 3, 9, 7), dtype=torch.uint8, generator=g)
    offsets = torch.randint(0, 5, (6, 2), generator=g)
    out = random_crop(images, offsets, padding=2)
    for i in range(6):
        padded = F.pad(images[i], (2, 2, 2, 2))
        dy, dx = offsets[i].tolist()
        assert torch.equal(out[i], padded[:, dy : dy + 9, dx : dx + 7])


def test_centre_offset_is_identity_and_flip_reverses_columns():
    images = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8)
    assert torch.equal(random_crop(images, torch.full((4, 2), 3), padding=3), images)
    flips = torch.tensor([True, False, True, False])
    out = hflip(images, flips)
    assert torch.equal(out[0], images[0].flip(-1)) and torch.equal(out[1], images[1])


def test_plan_depends_on_seed_and_epoch_only():
    a, b = plan_epoch(100, seed=3, epoch=2, padding=4, hflip=True), plan_epoch(100, 3, 2, 4, True)
    assert (
        torch.equal(a.order, b.order) and torch.equal(a.offsets, b.offsets) and torch.equal(a.flips, b.flips)
    )
    c = plan_epoch(100, seed=3, epoch=3, padding=4, hflip=True)
    assert not torch.equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(100))
    assert not plan_epoch(100, 3, 2, 4, hflip=False).flips.any()


def test_a_sample_is_augmented_the_same_whatever_the_batch_size():
    images = torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(50)
    plan = plan_epoch(50, seed=0, epoch=1, padding=2, hflip=True)
    seen = {}
    for batch_size in (7, 50):
        for x, y in batches(images, labels, batch_size, plan):
            for xi, yi in zip(x, y, strict=True):
                seen.setdefault(yi.item(), []).append(xi)
    assert len(seen) == 50 and all(torch.equal(v[0], v[1]) for v in seen.values())


def test_batches_cover_every_sample_once_and_drop_last():
    labels = torch.arange(10)
    images = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    got = torch.cat([y for _, y in batches(images, labels, 4)])
    assert sorted(got.tolist()) == list(range(10))
    assert [len(y) for _, y in batches(images, labels, 4, drop_last=True)] == [4, 4]


def test_normalize_matches_formula():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    expected = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(Normalize(mean, std)(x), expected, atol=1e-5)
