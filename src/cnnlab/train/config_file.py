"""Recipe files: ``cnnlab train --config FILE`` reads the settings of a run from YAML or JSON.

A file holds any of ``TrainConfig``'s fields, spelt as the field or as its flag (``weight_decay`` or
``weight-decay``); flags given on the command line win over it. A run's own ``config.json`` is such a
file too: its ``train`` settings are the resolved ones (epochs, rate, recipe fields), so training from
it repeats the run. Every key, type and range is checked before anything is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ..errors import CnnlabError
from .config import TrainConfig


class _RecipeLoader(yaml.SafeLoader):
    """YAML as a recipe needs it: floats as YAML 1.2 and JSON write them (PyYAML's YAML 1.1 reads 5e-4 as
    text), and no aliases, whose references can make a few hundred bytes expand to millions of values."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "a recipe file takes no aliases (*name)", mark)
        return super().compose_node(parent, index)


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

MAX_BYTES = 1 << 20  # a recipe is a few hundred bytes; a larger file is not one
# Set by training itself: a run's config.json has them, a recipe file does not set them.
_RECORDED = ("from_recipe", "out")
KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "from_recipe")
_HINTS = typing.get_type_hints(TrainConfig)
_SCALARS = (str, int, float, bool, type(None))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings ``path`` gives, checked: one line naming the file and the key for anything wrong."""
    where = str(path)
    raw = _parse(Path(path), where)
    if isinstance(raw, dict) and "format_version" in raw and "train" in raw:  # a run's config.json
        raw = raw["train"]
        if not isinstance(raw, dict) or not raw:
            raise CnnlabError(
                f"{where} is the config.json of a run with no training settings (a converted run)"
            )
        raw = {k: v for k, v in raw.items() if k not in _RECORDED}
    if not isinstance(raw, dict):
        raise CnnlabError(f"{where} must hold a mapping of settings (key: value), got {type(raw).__name__}")
    values = {}
    for key, value in raw.items():
        name = _name(key, where)
        values[name] = _value(name, value, where)
    try:  # how the settings go together is checked once the flags are in, by fit
        TrainConfig(**values).check_each()
    except CnnlabError as e:
        raise CnnlabError(f"{where}: {e}") from None
    return values


def _parse(path: Path, where: str) -> Any:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise CnnlabError(f"cannot read {where}: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise CnnlabError(f"{where} is over {MAX_BYTES // 1024} KiB: not a recipe file")
    try:
        text = data.decode("utf-8")
        # A deeply nested document exhausts either parser's recursion: a bad file, not a bug.
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_RecipeLoader)
    # ValueError: a date such as 2026-13-01, a "!!float abc", an integer of more digits than Python reads.
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError, RecursionError, ValueError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CnnlabError(f"{where} is not valid {kind}: {detail}") from None


def _name(key: Any, where: str) -> str:
    name = key.replace("-", "_") if isinstance(key, str) else key
    if name in KEYS:
        return name
    close = difflib.get_close_matches(str(name), KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; the keys are the flags of `cnnlab train`"
    raise CnnlabError(f"{where}: unknown setting {key!r}{hint}")


def _value(name: str, value: Any, where: str) -> Any:
    hint = _HINTS[name]
    if not _fits(value, hint):
        raise CnnlabError(f"{where}: {name} must be {_describe(hint)}, got {reprlib.repr(value)}")
    if name == "model_kwargs":
        for key, arg in value.items():
            if not (isinstance(key, str) and key.isidentifier()):
                raise CnnlabError(f"{where}: model_kwargs has a key that is not a name: {reprlib.repr(key)}")
            if not (
                isinstance(arg, _SCALARS)
                or (isinstance(arg, list) and all(isinstance(a, _SCALARS) for a in arg))
            ):
                raise CnnlabError(
                    f"{where}: model_kwargs.{key} must be a number, text, true/false or a list of them"
                )
    if float in _options(hint) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _options(hint: Any) -> tuple[Any, ...]:
    """The members of a union (``float | None``), or the hint itself."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _fits(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(hint))
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return isinstance(value, list) and all(_fits(v, typing.get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # NaN and inf are out of every range: the range check names them
        return isinstance(value, float) or (
            isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
        )
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    words = {int: "a whole number", float: "a number", bool: "true or false", str: "text", type(None): "null"}
    plural = {int: "whole numbers", float: "numbers", str: "texts"}
    parts = []
    for option in _options(hint):
        origin = typing.get_origin(option)
        if origin in (list, tuple):
            parts.append(f"a list of {plural.get(typing.get_args(option)[0], 'values')}")
        elif origin is dict:
            parts.append("a mapping")
        else:
            parts.append(words.get(option, str(option)))
    return " or ".join(dict.fromkeys(parts))
