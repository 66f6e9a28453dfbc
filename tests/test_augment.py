"""Batched augmentation equals a per-sample reference, and its randomness depends only on
(seed, epoch, sample index)."""

import math
import random
import threading

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.augment import (
    Normalize,
    batches,
    centre_crop,
    hflip,
    plan_epoch,
    prefetched,
    random_crop,
    resized_crop,
    resized_crop_boxes,
)


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


def test_a_resized_crop_without_scaling_is_the_box_and_a_flip_mirrors_it():
    images = torch.randint(0, 256, (3, 3, 12, 10), dtype=torch.uint8)
    whole = torch.tensor([[0, 0, 12, 10]] * 3)
    square = torch.randint(0, 256, (3, 3, 10, 10), dtype=torch.uint8)
    no, yes = torch.zeros(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool)
    assert torch.equal(resized_crop(square, whole.clamp(max=10), no, 10), square)
    assert torch.equal(resized_crop(square, whole.clamp(max=10), yes, 10), square.flip(3))
    boxes = torch.tensor([[1, 2, 6, 6], [0, 0, 6, 6], [6, 4, 6, 6]])
    out = resized_crop(images, boxes, no, 6)
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        assert torch.equal(out[i], images[i, :, top : top + h, left : left + w])
    # The whole image at another size is what F.interpolate's bilinear resize gives (no antialiasing).
    for size in (7, 21):
        want = F.interpolate(square.float(), size=(size, size), mode="bilinear", align_corners=False)
        got = resized_crop(square, whole.clamp(max=10), no, size)
        assert (got.int() - want.round().clamp(0, 255).int()).abs().max() <= 1


def reference_box(rng: random.Random, height: int, width: int) -> tuple[int, int]:
    for _ in range(10):
        area = height * width * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return h, w
    return height, min(width, round(height * 4 / 3))  # never reached at 40x60 in practice


def test_resized_crop_boxes_are_imagenets():
    g = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(20000, 40, 60, g)
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 60).all()
    area, aspect = (h * w).float() / (40 * 60), w.float() / h
    # Rounding to whole pixels moves the bounds by a pixel's worth.
    assert area.min() >= 0.07 and area.max() <= 1.0 and aspect.min() >= 0.7 and aspect.max() <= 1.4
    # The same distribution as a per-sample loop of the published algorithm (ten tries, then a centred
    # box), drawn with other random numbers: the means agree to sampling error.
    rng = random.Random(0)
    reference = [reference_box(rng, 40, 60) for _ in range(20000)]
    ref_area = sum(h * w for h, w in reference) / (20000 * 40 * 60)
    ref_aspect = sum(w / h for h, w in reference) / 20000
    assert abs(area.mean().item() - ref_area) < 0.01 and abs(aspect.mean().item() - ref_aspect) < 0.01
    # A draw that never fits (a 1x50 strip) falls back on the largest centred box within the ratios.
    strip = resized_crop_boxes(5, 1, 50, torch.Generator().manual_seed(0), tries=1)
    assert strip.tolist() == [[0, 24, 1, 1]] * 5


def test_a_plan_with_resized_crops_keeps_the_order_and_flips_and_depends_on_seed_and_epoch():
    padded = plan_epoch(50, seed=1, epoch=3, padding=4, hflip=True)
    resized = plan_epoch(50, seed=1, epoch=3, padding=4, hflip=True, resized=(40, 40, 32))
    assert torch.equal(padded.order, resized.order) and torch.equal(padded.flips, resized.flips)
    again = plan_epoch(50, seed=1, epoch=3, padding=4, hflip=True, resized=(40, 40, 32))
    other = plan_epoch(50, seed=1, epoch=4, padding=4, hflip=True, resized=(40, 40, 32))
    assert torch.equal(resized.boxes, again.boxes) and not torch.equal(resized.boxes, other.boxes)
    images = torch.randint(0, 256, (50, 3, 40, 40), dtype=torch.uint8)
    x, _ = next(batches(images, torch.arange(50), 16, resized))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.uint8
    idx = resized.order[:16]
    assert torch.equal(x, resized_crop(images[idx], resized.boxes[idx], resized.flips[idx], 32))
    assert torch.equal(centre_crop(images, 32), images[:, :, 4:36, 4:36])


def test_prefetched_hands_out_every_item_in_order_and_passes_errors_on():
    assert list(prefetched(iter(range(100)))) == list(range(100))

    def failing():
        yield 1
        raise ValueError("the producer failed")

    with pytest.raises(ValueError, match="producer failed"):
        list(prefetched(failing()))
    assert math.isclose(sum(prefetched([0.5, 0.25])), 0.75)


def _in_a_new_thread(work):
    out = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join()
    return out[0]


def test_prefetched_runs_torch_on_one_thread_in_its_worker_and_leaves_every_other_count():
    def counts():  # in the worker: its own count, and that of a thread it starts
        for _ in range(3):
            yield torch.get_num_threads(), _in_a_new_thread(torch.get_num_threads)

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the default a new thread copies
    try:
        # The caller is a fresh thread, whose first torch call is prefetched's.
        seen = _in_a_new_thread(lambda: (list(prefetched(counts())), torch.get_num_threads()))
        assert seen == ([(1, 2)] * 3, 2)  # the worker on one; the threads it starts and the caller on 2
    finally:
        torch.set_num_threads(before)
