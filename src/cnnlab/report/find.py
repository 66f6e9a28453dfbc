"""Discovering what `cnnlab report` shows: each directory is searched at any depth for run directories
(``result.json`` beside ``config.json``, as ``cnnlab train`` writes them) and analysis outputs
(``NAME.json`` beside ``NAME.png``), read into `Run` and `Analysis` records; what cannot be read is
noted in `Found.skipped` rather than failing the whole report.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from ..failures import FILES
from ..rundir import CONFIG, CURVES, RESULT

EVAL = FILES["json"]
FIGURES = {key: name for key, name in FILES.items() if key != "json"}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Run:
    path: Path  # as the user gave it, plus the part below
    result: dict[str, Any]
    curves: bytes | None
    evaluation: dict[str, Any] | None = None  # eval.json, as `cnnlab eval` writes it beside the run
    figures: dict[str, bytes | None] = field(default_factory=dict)  # its confusion, mistakes, calibration


@dataclass
class Analysis:
    name: str
    path: Path  # the directory holding NAME.json and NAME.png
    png: bytes | None
    data: Any = None
    problem: str | None = None  # why the JSON or the PNG could not be read


@dataclass
class Found:
    runs: list[Run] = field(default_factory=list)
    analyses: list[Analysis] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    """The parsed file; raises ValueError with a one-line reason."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path.name}: {e}") from None


def _read_png(path: Path) -> bytes | None:
    """The file's bytes if it is a PNG; anything else would show as a broken image."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_SIGNATURE) else None


def _search(root: Path, found: Found, seen: set[Path]) -> int:
    """Add what lies under ``root`` to ``found``; returns how many things were there, including those
    already found under an earlier directory (so that ``exp exp/runs`` is not an error)."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        # Sorted, so that the report lists things in the same order on every machine; hidden folders
        # (.venv, .git) and caches never hold results.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        here = Path(dirpath)
        files = set(filenames)
        is_run = RESULT in files and CONFIG in files
        stems = [f.removesuffix(".json") for f in files if f.endswith(".json") and not f.startswith(".")]
        pairs = sorted(stem for stem in stems if f"{stem}.png" in files)
        count += is_run + len(pairs)
        key = here.resolve()
        if key in seen:
            continue
        seen.add(key)
        if is_run:
            try:
                result = _read_json(here / RESULT)
                if not isinstance(result, dict):
                    raise ValueError(f"{RESULT} is not a JSON object")
            except ValueError as e:
                found.skipped.append({"path": str(here), "reason": str(e)})
            else:
                run = Run(here, result, _read_png(here / CURVES))
                if EVAL in files:
                    _add_failures(run, found)
                found.runs.append(run)
        for name in pairs:
            analysis = Analysis(name, here, _read_png(here / f"{name}.png"))
            try:
                analysis.data = _read_json(here / f"{name}.json")
            except ValueError as e:
                analysis.problem = str(e)
            if analysis.png is None:
                analysis.problem = f"{name}.png is not a readable PNG"
            found.analyses.append(analysis)
    return count


def _is_evaluation(e: Any) -> bool:
    """The parts of eval.json the page reads have the shape `cnnlab eval` gives them: a file edited by
    hand is left out with a note, not a crash."""
    f = e.get("failures") if isinstance(e, dict) else None
    if not isinstance(f, dict) or not isinstance(f.get("calibration", {}), dict):
        return False
    scores, pairs = f.get("per_class", []), f.get("confused_pairs", [])
    return (
        isinstance(scores, list)
        and all(
            isinstance(s, dict) and isinstance(s.get("f1"), (int, float)) and "class" in s for s in scores
        )
        and isinstance(pairs, list)
        and all(isinstance(p, dict) and {"true", "predicted", "count"} <= p.keys() for p in pairs)
    )


def _add_failures(run: Run, found: Found) -> None:
    """The run's eval.json and figures; an unreadable eval.json leaves the run shown without them."""
    try:
        evaluation = _read_json(run.path / EVAL)
        if not _is_evaluation(evaluation):
            raise ValueError(f"{EVAL} is not what `cnnlab eval` writes")
    except ValueError as e:
        found.skipped.append({"path": str(run.path / EVAL), "reason": str(e)})
        return
    run.evaluation = evaluation
    run.figures = {key: _read_png(run.path / name) for key, name in FIGURES.items()}


def find(dirs: list[str | os.PathLike[str]]) -> Found:
    """The runs and analyses under ``dirs``; a directory that is missing or holds neither is an error."""
    if not dirs:
        raise CnnlabError("give at least one directory to report on")
    found = Found()
    seen: set[Path] = set()
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise CnnlabError(f"{root} does not exist")
        if not root.is_dir():
            raise CnnlabError(f"{root} is not a directory")
        if _search(root, found, seen) == 0:
            raise CnnlabError(
                f"{root} holds nothing to report: no run directory (result.json and config.json) and no "
                "analysis (NAME.json beside NAME.png) at any depth"
            )
    if not found.runs and not found.analyses:
        raise CnnlabError(f"nothing could be read: {found.skipped[0]['path']}: {found.skipped[0]['reason']}")
    return found
