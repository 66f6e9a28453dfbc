"""The command line, fuzzed: random verbs, flags and values (empty, huge, negative, NaN, inf, not UTF-8).

The property: `cnnlab` answers a command line with a clean exit 0, or with one line on stderr and exit
2; never a traceback. Most examples call `cnnlab.cli.main` in this process; a few go through
`python -m cnnlab` with bytes that are not UTF-8 in argv, as a shell hands over a Latin-1 file name.

Heavy work cannot start: the trainer's first epoch (everything before it runs: the checks, the data,
the model, the run directory), the network, bench's timings and the report's search are replaced by
`Reached`, which ends an example whose arguments all passed; eval,
predict, export and convert run for real, from an empty folder where no run directory or checkpoint
can be found. The verbs whose every call is heavy (analyze, compare, experiment: they build, measure or
train models) get their arguments parsed and their handler replaced by `Reached`: what is fuzzed there
is their parser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import cnnlab
from cnnlab import cli

pytestmark = pytest.mark.slow  # hundreds of command lines, some through a new process

HEAVY_VERBS = ("analyze", "compare", "experiment")  # every call builds, measures or trains models
HEAVY = (
    "cnnlab.train.loop._announce",  # the run is set up and its directory written; training is next
    "cnnlab.data.cifar.download_file",  # no test reaches the network
    "cnnlab.bench.bench",
    "cnnlab.bench.sweep",
    "cnnlab.bench.check_models",
    "cnnlab.report.build_report",
)


class Reached(Exception):
    """A heavy entry point was called: every argument check before it passed."""


def _reached(*args: Any, **kwargs: Any) -> None:
    raise Reached


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _stub_handlers(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(func=_reached)
    for child in _subparsers(parser).values():
        _stub_handlers(child)


def _guarded(build: Callable[[], argparse.ArgumentParser]) -> Callable[[], argparse.ArgumentParser]:
    def build_parser() -> argparse.ArgumentParser:
        parser = build()
        for verb, sub in _subparsers(parser).items():
            if verb in HEAVY_VERBS:
                _stub_handlers(sub)
        return parser

    return build_parser


@contextlib.contextmanager
def guarded_cli(folder: Path) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for target in HEAVY:
            mp.setattr(target, _reached)
        mp.setattr(cli, "build_parser", _guarded(cli.build_parser))
        mp.delenv("WORLD_SIZE", raising=False)  # no torchrun process group, whatever the environment
        mp.chdir(folder)  # relative paths land in an empty folder
        yield


def run(argv: list[str]) -> tuple[int | str | None, str, str]:
    """``main(argv)``'s exit status (or "reached"), stdout and stderr; any other exception escapes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str | None = cli.main(argv)
        except SystemExit as e:  # argparse: a usage error (2) or --help (0)
            code = e.code
        except Reached:
            code = "reached"
    return code, out.getvalue(), err.getvalue()


def check(argv: list[str]) -> None:
    try:
        code, _, err = run(argv)
    except Exception as e:
        raise AssertionError(f"a traceback for cnnlab {_short(argv)}") from e
    assert "Traceback" not in err, (_short(argv), err[:2000])
    assert code in (0, 2, "reached"), (_short(argv), code, err[:2000])
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cnnlab"), (_short(argv), err[:2000])


def _short(argv: list[str]) -> str:
    """The argv for a failure message: a 100,000-character value would bury it."""
    return repr([a if len(a) <= 60 else f"{a[:40]}...({len(a)} chars)" for a in argv])


# --- the command lines ------------------------------------------------------------------------------

# What a shell passes for bytes that are not UTF-8: surrogates (PEP 383). NUL cannot be in an argv.
NOT_UTF8 = st.binary(min_size=1, max_size=8).filter(lambda b: b"\0" not in b).map(os.fsdecode)
TEXT = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20)
NUMBERS = (
    st.sampled_from(["0", "-0", "1", "-1", "2", "7", "-5", "1.5", "1e3", "nan", "NaN", "-nan", "inf", "-inf"])
    | st.sampled_from(["1e309", "1e-320", "0x10", "1_000", "-1e30", "\u0663", "\uff13", " 7 ", "9" * 4000])
    | st.sampled_from([str(2**63), str(2**64)])
)
SIZES = st.sampled_from(["3x32x32", "1x28x28", "1x8x8", "0x0x0", "1x1x1", "3x-1x5", "3X8X8", "224x224"]) | (
    st.sampled_from(["x", "3\u00d78\u00d78", "3x4096x4096", "2000x8x8", f"3x{2**64}x4", "3x1.5x4", " 3x8x8 "])
)
WORDS = (
    st.sampled_from(["resnet20", "simple_cnn", "knn", "linear", "dcn_resnet20", "resnet2", "resnet*", "*"])
    | st.sampled_from(["[", "[!", "mnist5k", "cifar10", "k=5", "metric=cosine", "=", "k=", "k=((((", "1=2"])
    | st.sampled_from(["cpu", "cuda", "auto", "bf16", "fp16", "onnx", "torchscript", "pt2", "timm"])
    | st.sampled_from([".", "..", "/", "nope/run", "run.json", "-", "--", "-h", "--help", "--json", "--no"])
)
HUGE = st.sampled_from(["a" * 100_000, "-" * 99_999 + "1", "k=" + "(" * 10_000, "k=" + "-" * 100_000 + "1"])
VALUES = st.one_of(NUMBERS, SIZES, WORDS, TEXT, NOT_UTF8, HUGE, st.just(""))


def _options(parser: argparse.ArgumentParser) -> dict[str, list[str] | None]:
    """Each flag of ``parser`` with its choices ([] for a flag that takes no value, None for any)."""
    return {
        s: [] if a.nargs == 0 else ([str(c) for c in a.choices] if a.choices else None)
        for a in parser._actions
        for s in a.option_strings
        if s not in ("-h", "--help")
    }


# Each verb's flags, and the subcommands of analyze and experiment with theirs.
VERB_OPTIONS: dict[str, dict[str, list[str] | None]] = {}
for _verb, _parser in _subparsers(cli.build_parser()).items():
    VERB_OPTIONS[_verb] = _options(_parser)
    for _name, _child in _subparsers(_parser).items():
        VERB_OPTIONS[f"{_verb} {_name}"] = _options(_child)


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """A verb (one time in ten anything), a positional or two, then flags with values of their kind or
    of any kind."""
    verb = draw(st.sampled_from(sorted(VERB_OPTIONS))) if draw(st.integers(0, 9)) else draw(VALUES)
    argv = [*verb.split(" "), *draw(st.lists(WORDS | VALUES, max_size=2))]
    options = VERB_OPTIONS.get(verb, {})
    for _ in range(draw(st.integers(0, 5))):
        flag = draw(st.sampled_from(sorted(options))) if options and draw(st.integers(0, 7)) else draw(WORDS)
        kind = options.get(flag)
        if kind == [] and draw(st.integers(0, 7)):  # a switch, mostly without a value
            argv.append(flag)
        elif kind and draw(st.booleans()):
            argv += [flag, draw(st.sampled_from(kind))]
        else:
            argv += [flag, draw(VALUES)]
    return argv


FUZZ = settings(
    max_examples=300,
    deadline=None,  # one summary of a big model takes a second on a loaded machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


def test_random_command_lines_end_in_one_line_or_a_clean_exit(tmp_path: Path) -> None:
    @FUZZ
    @given(command_lines())
    def fuzz(argv: list[str]) -> None:
        event(argv[0] if argv and argv[0] in VERB_OPTIONS else "no verb")
        check(argv)

    with guarded_cli(tmp_path):
        fuzz()


@pytest.mark.parametrize("verb", sorted(VERB_OPTIONS))
def test_every_flag_of_every_verb_with_bad_values(tmp_path: Path, verb: str) -> None:
    """Each flag alone, with each of a fixed set of bad values: no example is left to chance."""
    bad = ["", "-1", "nan", "inf", "9" * 4000, "\udcff", "x" * 10_000]
    positionals = {"eval": ["nope"], "predict": ["nope", "x.png"], "summary": ["resnet20"]}
    positionals |= {"bench": ["resnet20"], "export": ["nope"], "report": ["nope"]}
    positionals |= {"convert": ["--from", "timm", "--model", "resnet18", "nope.pth", "--out", "out"]}
    with guarded_cli(tmp_path):
        for flag in sorted(VERB_OPTIONS[verb]):
            for value in bad:
                check([*verb.split(" "), *positionals.get(verb, []), flag, value])


def test_the_check_fails_on_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a bug in a verb's handler is caught by `check`, as is a traceback on stderr."""

    def buggy(args: argparse.Namespace) -> None:
        return {}["no such key"]

    monkeypatch.setattr("cnnlab.cli.models.run", buggy)
    with guarded_cli(tmp_path), pytest.raises(AssertionError, match="a traceback for cnnlab"):
        check(["models"])
    printed = (2, "", "Traceback (most recent call last):\n  File ...\nKeyError: 'no such key'\n")
    monkeypatch.setattr(sys.modules[__name__], "run", lambda argv: printed)
    with pytest.raises(AssertionError):  # exit 2, but a traceback printed on stderr
        check(["models"])


# --- through `python -m cnnlab`, with argv bytes that are not UTF-8 -------------------------------------


def _cnnlab(*args: bytes, cwd: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        capture_output=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet-20 for 1x8x8 images as a run directory, and an image whose name is Latin-1."""
    from helpers import save_run

    root = tmp_path_factory.mktemp("fuzz_run")
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet20", num_classes=3, in_chans=1)
    save_run(model, root / "run", "resnet20", ["a", "b", "c"], [1, 8, 8])
    Image.new("L", (8, 8), 128).save(os.fsdecode(bytes(root) + b"/caf\xe9.png"))
    return root


@pytest.mark.parametrize(
    "argv",
    [
        [b"\xff\xfe"],
        [b"eval", b"run\xe9"],
        [b"predict", b"run\xe9", b"\xff.png", b"--json"],
        [b"train", b"--model-arg", b"k=\xe9", b"--epochs", b"0"],
        [b"report", b"caf\xe9", b"--out", b"\xff.html", b"--title", b"\xff"],
    ],
)
def test_argv_that_is_not_utf8_is_one_line(tmp_path: Path, argv: list[bytes]) -> None:
    proc = _cnnlab(*argv, cwd=tmp_path, PYTHONIOENCODING="utf-8:strict")  # a locale that would choke
    err = proc.stderr.decode("utf-8", "backslashreplace")
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_file_name_that_is_not_utf8_comes_back_as_its_bytes(tiny_run: Path) -> None:
    """predict echoes the image's name: the user's bytes, not a UnicodeEncodeError, in a strict locale.
    (``--json`` escapes it: ``"caf\\udce9.png"``.)"""
    image = bytes(tiny_run) + b"/caf\xe9.png"
    proc = _cnnlab(b"predict", bytes(tiny_run / "run"), image, cwd=tiny_run, PYTHONIOENCODING="utf-8:strict")
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "backslashreplace")
    assert proc.stdout.startswith(image + b": ")


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`cnnlab summary resnet152 --json | head`: 100 kB of JSON, more than a pipe holds (64 kB)."""
    with subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "summary", "resnet152", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(10)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 1 and err == "", err


# --- what the fuzz found: each one line now -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["summary", "resnet20", "--num-classes", str(2**64)],  # was TypeError: Overflow when unpacking long
        ["summary", "resnet20", "--num-classes", str(2**63 - 1)],  # was RuntimeError: Storage size overflowed
        ["summary", "resnet20", "--input", f"{2**63 - 1}x32x32"],
        ["summary", "vgg11", "--input", f"3x{2**64}x{2**64}"],
        ["summary", "resnet20", "--input", "3x" + "9" * 5000 + "x8"],  # was ValueError: int() digit limit
        ["bench", "resnet20", "--input", "3x" + "9" * 5000 + "x8"],
        # was OSError: [Errno 36] File name too long, from the run directory's checks
        ["convert", "--from", "timm", "--model", "resnet18", "m.pth", "--out", "x" * 300],
        ["eval", "x" * 300],
        ["train", "--init", "x" * 300],
        ["train", "--warmup-epochs", "inf"],  # was OverflowError in the schedule
        ["train", "--image-size", "99999999999999999999"],  # was TypeError in the resize
        ["train", "--optimizer", "nesterov", "--momentum", "0"],  # was ValueError from torch.optim.SGD
        ["train", "--out", "/dev/null/run"],  # was NotADirectoryError creating the run directory
        ["train", "--data", "9" * 4000],  # was OSError: File name too long, looking for the path
    ],
)
def test_what_the_fuzz_found_is_one_line(tmp_path: Path, argv: list[str]) -> None:
    with guarded_cli(tmp_path):
        code, _, err = run(argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
