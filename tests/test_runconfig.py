"""config.json as one typed structure: today's files load, a round trip is exact, damage is named."""

from __future__ import annotations

import copy

import pytest

from cnnlab.errors import RunDirError
from cnnlab.runconfig import FORMAT_VERSION, DataInfo, RunConfig

# As `cnnlab train` wrote config.json before the schema was typed (format 1).
TRAINED = {
    "format_version": 1, "model": "resnet20", "model_kwargs": {}, "num_classes": 10, "in_chans": 1,
    "params": 269722,
    "data": {"name": "mnist5k", "source": "mnist5k", "classes": [str(i) for i in range(10)],
             "mean": [0.1307], "std": [0.3081], "input_size": [1, 28, 28], "hflip": False,
             "train_size": 4000, "test_size": 1000},
    "train": {"model": "resnet20", "data": "mnist5k", "epochs": 12, "batch_size": 128, "lr": 0.1},
    "device": "cpu", "precision": "bf16", "channels_last": True, "torch": "2.13.0",
}  # fmt: skip
# As `cnnlab convert` wrote it: ImageNet preprocessing, no channels_last or torch, "float32".
CONVERTED = {
    "format_version": 1, "model": "resnet18", "model_kwargs": {}, "num_classes": 1000, "in_chans": 3,
    "params": 11689512,
    "data": {"name": "imagenet", "source": "imagenet", "classes": [f"c{i}" for i in range(1000)],
             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": [3, 224, 224],
             "resize_size": 256, "interpolation": "bilinear", "hflip": True, "train_size": 0, "test_size": 0},
    "train": {"data_root": None},
    "converted": {"from": "torchvision", "model": "resnet18", "file": "/tmp/r18.pth"},
    "device": "cpu", "precision": "float32",
}  # fmt: skip


def test_configs_written_before_the_typed_schema_still_load():
    trained = RunConfig.from_json(copy.deepcopy(TRAINED), "config.json")
    assert trained.data.input_size == [1, 28, 28] and trained.data.hflip is False
    assert trained.channels_last is True and trained.train["batch_size"] == 128 and trained.converted is None
    converted = RunConfig.from_json(copy.deepcopy(CONVERTED), "config.json")
    assert converted.data.resize_size == 256 and converted.converted["from"] == "torchvision"
    assert converted.channels_last is False and converted.torch is None  # the defaults of absent fields


@pytest.mark.parametrize("raw", [TRAINED, CONVERTED], ids=["trained", "converted"])
def test_a_round_trip_is_exact(raw):
    config = RunConfig.from_json(copy.deepcopy(raw), "config.json")
    written = config.to_json()
    assert RunConfig.from_json(written, "config.json") == config
    # What the file had is kept as it was; the schema only adds its defaults.
    assert written.items() >= {k: v for k, v in raw.items() if k != "data"}.items()
    assert written["data"].items() >= raw["data"].items()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"num_classes": "10"}, "'num_classes'"),
        ({"num_classes": True}, "'num_classes'"),
        ({"model_kwargs": {"not a name": 1}}, "'model_kwargs' key"),
        ({"data": {**TRAINED["data"], "mean": [0.1, float("nan")]}}, "data.'mean'"),
        ({"data": {**TRAINED["data"], "classes": [1, 2]}}, "data.'classes'"),
        ({"data": {**TRAINED["data"], "std": [0.3, 0.3]}}, "do not fit together"),
        ({"data": {k: v for k, v in TRAINED["data"].items() if k != "source"}}, "no data.'source'"),
        ({"format_version": FORMAT_VERSION + 1}, "another version of cnnlab"),
        ({"data": []}, "'data'"),
    ],
)
def test_damage_is_one_line_naming_the_field(change, named):
    with pytest.raises(RunDirError, match=r"config\.json") as error:
        RunConfig.from_json({**copy.deepcopy(TRAINED), **change}, "config.json")
    assert named in str(error.value) and "\n" not in str(error.value)


def test_data_info_is_what_load_run_gives_inference():
    info = RunConfig.from_json(copy.deepcopy(TRAINED), "config.json").data
    assert isinstance(info, DataInfo) and info.interpolation == "bilinear" and info.resize_size is None
