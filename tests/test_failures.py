"""Where a model fails: the numbers of `cnnlab.failures` against hand computations, and `cnnlab eval`'s
files and report."""

import json
import math
import shutil

import pytest
import torch

from cnnlab.failures import (
    calibration,
    confidently_wrong,
    confused_pairs,
    confusion_matrix,
    per_class,
    summarize,
)

CLASSES = ["a", "b", "c"]
# Five images: a->a, a->b, b->b, c->a, c->c (true -> predicted), made from logits by hand.
LABELS = torch.tensor([0, 0, 1, 2, 2])
LOGITS = torch.tensor(
    [
        [3.0, 0.0, 0.0],  # a, right, p = e^3 / (e^3 + 2)
        [0.0, 1.0, 0.0],  # a taken for b
        [0.0, 2.0, 0.0],  # b, right
        [4.0, 0.0, 0.0],  # c taken for a, the most confident mistake
        [0.0, 0.0, 1.0],  # c, right
    ]
)


def test_the_confusion_matrix_counts_true_rows_and_predicted_columns():
    cm = confusion_matrix(LOGITS.argmax(1), LABELS, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_precision_recall_and_f1_are_the_hand_computed_ones():
    scores = {s["class"]: s for s in per_class(torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 1]]), CLASSES)}
    # a: predicted twice, right once; 2 images, 1 found.
    assert scores["a"]["precision"] == pytest.approx(1 / 2) and scores["a"]["recall"] == pytest.approx(1 / 2)
    assert scores["a"]["f1"] == pytest.approx(1 / 2)
    # b: predicted twice, right once; 1 image, found: F1 = 2 * 0.5 * 1 / 1.5.
    assert scores["b"]["precision"] == pytest.approx(1 / 2) and scores["b"]["recall"] == 1.0
    assert scores["b"]["f1"] == pytest.approx(2 / 3)
    assert scores["c"]["precision"] == 1.0 and scores["c"]["recall"] == pytest.approx(1 / 2)
    assert [s["support"] for s in scores.values()] == [2, 1, 2]


def test_a_class_never_predicted_scores_zero_not_nan():
    scores = per_class(torch.tensor([[2, 0], [1, 0]]), ["x", "y"])
    assert scores[1] == {"class": "y", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_the_most_confused_pairs_come_first_and_the_diagonal_never():
    cm = torch.tensor([[9, 1, 4], [0, 7, 0], [2, 5, 3]])
    pairs = confused_pairs(cm, CLASSES, n=3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("c", "b", 5),
        ("a", "c", 4),
        ("c", "a", 2),
    ]
    assert pairs[0]["share_of_true"] == pytest.approx(5 / 10)
    assert all(p["true"] != p["predicted"] for p in confused_pairs(cm, CLASSES, n=9))  # 4 off-diagonal > 0


def test_the_calibration_error_is_the_hand_computed_one():
    # Bins of width 0.5: (0, 0.5] holds 0.2 (wrong) and 0.4 (right); (0.5, 1] holds 0.9 (right), 1.0 (right).
    result = calibration(torch.tensor([0.2, 0.4, 0.9, 1.0]), torch.tensor([False, True, True, True]), bins=2)
    low, high = result["bins"]
    assert (low["count"], high["count"]) == (2, 2)
    assert low["confidence"] == pytest.approx(0.3) and low["accuracy"] == 0.5
    assert high["confidence"] == pytest.approx(0.95) and high["accuracy"] == 1.0
    # ECE = 2/4 * |0.5 - 0.3| + 2/4 * |1 - 0.95|
    assert result["ece"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.05)


def test_a_perfectly_calibrated_model_has_no_calibration_error_and_an_overconfident_one_has():
    confidence = torch.full((100,), 0.8)
    calibrated = torch.arange(100) < 80
    assert calibration(confidence, calibrated)["ece"] == pytest.approx(0.0, abs=1e-6)
    assert calibration(confidence, torch.arange(100) < 50)["ece"] == pytest.approx(0.3)


def test_the_gallery_is_the_wrong_images_most_confident_first():
    probs = LOGITS.softmax(1)
    assert confidently_wrong(probs, LABELS) == [3, 1]
    assert confidently_wrong(probs, LABELS, n=1) == [3]


def test_the_summary_puts_it_together():
    s = summarize(LOGITS, LABELS, CLASSES)
    assert s["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert s["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert s["confidently_wrong"][0] == {
        "index": 3,
        "true": "c",
        "predicted": "a",
        "confidence": pytest.approx(math.e**4 / (math.e**4 + 2)),
    }


@pytest.mark.slow
def test_eval_writes_where_the_model_fails_and_the_json_carries_it(cli, trained_run, tmp_path):
    proc = cli("eval", str(trained_run), "--backend", "torch", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    failures = result["failures"]
    cm = torch.tensor(failures["confusion"])
    # The matrix holds every test image once, and its diagonal is the top-1 the command reports.
    assert cm.sum() == result["images"] == 1000
    assert cm.diagonal().sum().item() / 1000 == result["test_acc"]
    assert sum(s["support"] for s in failures["per_class"]) == 1000
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["failures"] == failures
    for name in ("confusion.png", "mistakes.png", "calibration.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert set(result["files"]) == {"json", "confusion", "mistakes", "calibration"}


@pytest.mark.slow
def test_a_dataset_without_test_images_is_one_line(cli, trained_run, tiny_digits, tmp_path):
    folder = tmp_path / "no-test"
    shutil.copytree(tiny_digits / "train", folder / "train")
    for c in range(10):
        (folder / "test" / str(c)).mkdir(parents=True)  # the classes, and not one image
    proc = cli("eval", str(trained_run), "--data", str(folder), "--backend", "torch", "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    # The folder reader refuses it before anything is evaluated.
    assert proc.stderr.count("\n") == 1 and "has no images" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.slow
def test_an_out_directory_that_cannot_be_written_is_one_line(cli, trained_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = cli("eval", str(trained_run), "--backend", "torch", "--out", str(blocker / "sub"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr
