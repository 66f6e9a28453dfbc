"""The command line, run as a user would: in a subprocess, reading stdout, stderr and exit codes."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab import data
from cnnlab.cli import main as cnnlab_main
from cnnlab.cli.common import DEVICE, SEED
from cnnlab.data.augment import Normalize
from cnnlab.predict import run_dataset
from cnnlab.train import TrainConfig


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow
def test_models_json_lists_the_resnets_with_counts(cli):
    proc = cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["models"]}
    assert rows["resnet50"]["params"] == 25_557_032 and rows["resnet50"]["family"] == "resnet"
    assert rows["resnet18"]["min_input_size"] == 32 and "plain110" in rows
    # Every variant is described in its own paragraph, not by its family's citation.
    descriptions = [r["description"] for r in rows.values()]
    assert len(set(descriptions)) == len(rows) and min(map(len, descriptions)) > 40


@pytest.mark.slow
def test_summary_json_has_params_and_layers(cli):
    proc = cli("summary", "resnet20", "--input", "1x28x28", "--num-classes", "10", "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["params"] == 269_434 and s["output_shape"] == [10]
    assert s["layers"][0] == {
        "name": "conv1",
        "type": "Conv2d",
        "output_shape": [16, 28, 28],
        "params": 144,
        "macs": 16 * 9 * 28 * 28,
        "receptive_field": 3,
        "stride": 1,
    }


@pytest.mark.slow
def test_summary_table_is_printed(cli):
    proc = cli("summary", "resnet18")
    assert proc.returncode == 0 and "11,689,512" in proc.stdout and "layer4.1.conv2" in proc.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["train", "--model", "resnet2"], ["unknown model", "resnet20"]),
        (["train", "--data", "nowhere/at/all"], ["unknown dataset", "nowhere/at/all"]),
        (["train", "--model", "resnet18", "--image-size", "16"], ["at least 32x32"]),
        (["train", "--epochs", "many"], ["invalid int value"]),
        (["summary", "resnet18", "--input", "3x16x16"], ["at least 32x32"]),
        (["summary", "resnet18", "--input", "224x224"], ["CxHxW"]),
        (["eval", "no/such/run"], ["does not exist"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
@pytest.mark.slow
def test_user_errors_are_one_line_without_traceback(cli, tmp_path, args, needles):
    proc = cli(*args, cwd=tmp_path)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "runs").exists()


def test_the_shared_options_default_as_the_trainer_does():
    d = TrainConfig()
    assert (d.seed, d.device) == (SEED.get_default("seed"), DEVICE.get_default("device"))
    # `train` leaves every setting not given out of its arguments: TrainConfig's default, or a --config
    # file's value, fills it.
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    args = cnnlab.cli.build_parser().parse_args(["train"])
    assert not fields & set(vars(args)) and d.data == "mnist5k"
    args = cnnlab.cli.build_parser().parse_args(["train", "--seed", "0", "--data", "x", "--lr", "0.1"])
    assert fields & set(vars(args)) == {"seed", "data", "lr"}  # the control: given, even as the default


@pytest.mark.slow
def test_train_prints_one_plain_line_per_epoch_off_a_terminal(trained_run):
    lines = (trained_run.parent / "train.stdout").read_text().splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert all("img/s" in line and "test loss" in line for line in epochs)
    assert lines[-1].startswith("test accuracy") and "\x1b[" not in "".join(lines)  # no escape codes


@pytest.mark.slow
def test_eval_reproduces_the_training_result(cli, trained_run):
    proc = cli("eval", str(trained_run), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    trained = json.loads((trained_run / "result.json").read_text())
    assert result["images"] == 1000
    # The trainer evaluates in fp32, and so does eval by default, on whichever engine: the same images
    # right, up to one whose logits tie within float rounding.
    assert result["precision"] == "fp32"
    assert result["test_acc"] == pytest.approx(trained["test_acc"], abs=0.0011)


@pytest.mark.slow
def test_predict_labels_real_digits(cli, trained_run, tmp_path):
    d = data.load("mnist5k")
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(d.test_images[i, 0].numpy()).save(path)
        paths.append(str(path))
    proc = cli("predict", str(trained_run), *paths, "--topk", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(proc.stdout)["predictions"]
    assert [p["image"] for p in preds] == paths
    for p in preds:
        assert len(p["top"]) == 2 and p["top"][0]["prob"] >= p["top"][1]["prob"]
        assert p["top"][0]["label"] in d.classes
    # The CLI's answer equals the library model's on the same pixels.
    model = cnnlab.load_run(trained_run)
    norm = Normalize(tuple(model.data_config.mean), tuple(model.data_config.std))
    with torch.no_grad():
        expected = model(norm(d.test_images[:3])).argmax(1).tolist()
    assert [p["top"][0]["index"] for p in preds] == expected


@pytest.mark.slow
def test_predict_unreadable_image_is_one_line(cli, trained_run, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    assert_one_line_error(cli("predict", str(trained_run), str(bad)), "notes.png")
    assert_one_line_error(cli("predict", str(trained_run), str(tmp_path / "missing.png")), "missing.png")


@pytest.mark.slow
def test_knn_trains_by_storing_the_training_set(cli, tmp_path):
    out = tmp_path / "knn"
    proc = cli(
        "train", "--model", "knn", "--model-arg", "metric=cosine", "--model-arg", "k=3", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "training set stored" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["model_kwargs"] == {"metric": "cosine", "k": 3} and config["train"]["epochs"] == 1
    result = json.loads((out / "result.json").read_text())
    assert result["test_acc"] > 0.9  # k-NN on raw digits; chance is 0.1
    evaluated = json.loads(cli("eval", str(out), "--json").stdout)
    assert evaluated["test_acc"] == result["test_acc"]  # the stored set came back with the weights


@pytest.mark.slow
def test_linear_trains_without_random_crops(cli, tmp_path):
    out = tmp_path / "linear"
    proc = cli("train", "--model", "linear", "--epochs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["train"]["padding"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(("arg", "needle"), [("cosine", "KEY=VALUE"), ("metrc=cosine", "unexpected keyword")])
def test_bad_model_arg_is_one_line(cli, tmp_path, arg, needle):
    assert_one_line_error(cli("train", "--model", "knn", "--model-arg", arg, cwd=tmp_path), needle)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_analyze_rf_reads_a_run_directory(trained_run, tmp_path, capsys):
    args = ["analyze", "rf", str(trained_run), "--images", "3", "--out", str(tmp_path), "--json"]
    assert cnnlab_main(args) == 0
    r = json.loads(capsys.readouterr().out)
    # The run's ResNet-20 on its own 1x28x28 digits: the last map is 7x7, its centre unit (3, 3) sits at
    # input pixel 3 * 4 = 12, and the effective field is smaller than the theoretical 81 pixels.
    assert r["input"] == [1, 28, 28] and r["effective"]["images"] == "mnist5k"
    assert (r["receptive_field"], r["feature_map"], r["centre_unit_px"]) == (81, [7, 7], [12, 12])
    assert 1 <= r["effective"]["half_mass_side"] < 81 and r["effective"]["count"] == 3
    assert (tmp_path / "rf.png").exists()


def _folder(root: Path, classes: list[str]) -> Path:
    """An image folder of 1x8x8 images, a shade per class, two per class and split: seconds to load."""
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("L", (8, 8), 40 * c + i).save(root / split / name / f"{i}.png")
    return root


def _run(root: Path, classes: list[str], **config) -> Path:
    from helpers import save_run

    torch.manual_seed(0)
    model = cnnlab.create_model("resnet20", num_classes=len(classes), in_chans=1)
    out = save_run(model, root, "resnet20", classes, [1, 8, 8])
    if config:  # e.g. converted=...: written into config.json as convert would
        raw = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**raw, **config}))
    return out


def test_eval_on_the_same_classes_in_another_order_maps_them_by_name(tmp_path, capsys):
    run = _run(tmp_path / "run", ["c", "a", "b"])  # as a dataset that lists its classes unsorted
    folder = _folder(tmp_path / "abc", ["a", "b", "c"])  # a folder sorts them
    ds = run_dataset(run, str(folder))
    assert ds.classes == ["c", "a", "b"]
    # Each test image's label names the folder it came from: a (shade 0..1), b (40..), c (80..).
    shades = ds.test_images[:, 0, 0, 0].tolist()
    assert [ds.classes[label] for label in ds.test_labels.tolist()] == ["abc"[int(s) // 40] for s in shades]
    assert cnnlab_main(["eval", str(run), "--data", str(folder), "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "in another order: labels matched by name" in result["note"] and result["images"] == 6
    assert cnnlab_main(["eval", str(run), "--data", str(folder), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == result["note"]


def test_eval_on_other_class_names_is_refused_in_one_line(tmp_path, capsys):
    run = _run(tmp_path / "run", ["a", "b", "c"])
    folder = _folder(tmp_path / "xyz", ["a", "x", "y"])
    assert cnnlab_main(["eval", str(run), "--data", str(folder), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other classes" in err and "x, y (the run has b, c)" in err


def test_eval_of_a_converted_run_goes_by_position(tmp_path, capsys):
    """A converted run's names are ImageNet's or placeholders, never a folder's: no refusal, no note."""
    run = _run(tmp_path / "run", ["class 0", "class 1", "class 2"], converted={"from": "timm"})
    folder = _folder(tmp_path / "abc", ["a", "b", "c"])
    assert cnnlab_main(["eval", str(run), "--data", str(folder), "--device", "cpu", "--json"]) == 0
    assert "note" not in json.loads(capsys.readouterr().out)
