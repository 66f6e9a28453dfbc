"""The schema of a run's ``config.json``, as one typed structure.

Training and ``cnnlab convert`` build a ``RunConfig`` and write it; every reader gets one back from
``rundir.read_config``, checked field by field, so a hand-edited or damaged file is one line naming
the field rather than a KeyError somewhere downstream. ``train`` stays a plain mapping: it is the
trainer's own settings (``TrainConfig``), which only the trainer interprets.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import RunDirError

FORMAT_VERSION = 1


@dataclass
class DataInfo:
    """What inference needs to know of the data a model was trained on."""

    name: str
    source: str  # the dataset name or path given to training, read again by `eval`
    classes: list[str]
    mean: list[float]  # per channel, 0..1 scale
    std: list[float]
    input_size: list[int]  # C, H, W
    hflip: bool = True
    train_size: int = 0
    test_size: int = 0
    val_size: int = 0  # held out of the training set (--val-fraction)
    resize_size: int | None = None  # shorter side before the centre crop (a converted ImageNet model)
    interpolation: str = "bilinear"


@dataclass
class RunConfig:
    model: str
    num_classes: int
    in_chans: int
    data: DataInfo
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    params: int = 0
    train: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    torch: str | None = None
    converted: dict[str, str] | None = None  # where a converted run's weights came from
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["converted"] is None:
            del out["converted"]
        return {"format_version": out.pop("format_version"), **out}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> RunConfig:
        """``raw`` parsed from the file ``where``; anything that does not fit is a RunDirError."""
        if not isinstance(raw, dict):
            raise RunDirError(f"{where} is not a JSON object; the run directory is damaged")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise RunDirError(
                f"{where} was written by another version of cnnlab (format {version}, this one reads "
                f"{FORMAT_VERSION}); retrain it or use the cnnlab that wrote it"
            )
        data = raw.get("data")
        if not isinstance(data, dict):
            raise RunDirError(f"{where} has no valid 'data' (dict); the run directory is damaged")
        info = DataInfo(**_fields(DataInfo, data, where, "data."))
        config = cls(**_fields(cls, {**raw, "data": info}, where))
        if not all(isinstance(k, str) and k.isidentifier() for k in config.model_kwargs):
            raise RunDirError(f"{where} has a 'model_kwargs' key that is not a name; it is damaged")
        if (
            len(info.input_size) != 3
            or len(info.mean) != info.input_size[0]
            or len(info.std) != len(info.mean)
        ):
            raise RunDirError(f"{where}: data.input_size, mean and std do not fit together; it is damaged")
        return config


# The JSON types each field may hold; a field absent from the file takes its default, if it has one.
_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "list[str]": (list,),
    "list[float]": (list,),
    "list[int]": (list,),
    "dict[str, Any]": (dict,),
    "dict[str, str] | None": (dict, type(None)),
    "str | None": (str, type(None)),
    "int | None": (int, type(None)),
    "DataInfo": (DataInfo,),
}
_ITEMS = {"list[str]": (str,), "list[float]": (int, float), "list[int]": (int,)}


def _fields(cls: type, raw: dict[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    values = {}
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in raw:
            if required:
                raise RunDirError(f"{where} has no {prefix}{f.name!r}; the run directory is damaged")
            continue
        value, kind = raw[f.name], str(f.type)
        if not _fits(value, kind):
            raise RunDirError(
                f"{where} has no valid {prefix}{f.name!r} ({kind}); the run directory is damaged"
            )
        values[f.name] = value
    return values


def _fits(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "bool":  # JSON true is no count of classes
        return False
    if not isinstance(value, _KINDS[kind]):
        return False
    items = _ITEMS.get(kind)
    if items is None:
        return True
    return all(
        isinstance(v, items) and not isinstance(v, bool) and (not isinstance(v, float) or math.isfinite(v))
        for v in value
    )
