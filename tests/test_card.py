"""Each run directory's README.md: the model and its paper, the data, the recipe, the results with
their spread, the machine, and how to load it, all read from the run's own files."""

from __future__ import annotations

import json
import math

import pytest


@pytest.mark.slow
def test_the_card_says_what_the_runs_files_say(trained_run):
    card = (trained_run / "README.md").read_text()
    result = json.loads((trained_run / "result.json").read_text())
    config = json.loads((trained_run / "config.json").read_text())
    assert card.startswith("# resnet20 on mnist5k\n")
    assert "Deep Residual Learning for Image Recognition" in card  # the paper
    for section in ("## Data", "## Recipe", "## Results", "## Machine", "## Use"):
        assert section in card
    n, acc = config["data"]["test_size"], result["test_acc"]
    spread = 100 * math.sqrt(acc * (1 - acc) / n)
    assert f"Test top-1 {100 * acc:.2f}% ± {spread:.2f} (standard error over {n:,} test images)" in card
    assert f"| lr | {config['train']['lr']} | the model's default recipe |" in card
    assert "| epochs | 2 | this run |" in card and "| seed | 0 | cnnlab's default |" in card
    assert f"{config['data']['train_size']:,} training images, {n:,} test images" in card
    assert "validation" not in card.split("## Results")[0]  # no split: none described
    assert f'cnnlab.load_run("{trained_run}")' in card and "torch" in card.split("## Machine")[1]
