"""The optional C++ kernel of deformable convolution's sampling (``csrc/deform_sample.cpp``).

``make`` builds it once with the system compiler (``native.main()``, through
``torch.utils.cpp_extension``) into ``_native/`` beside this file; ``deform_conv.py`` loads it when
it is there and otherwise samples with ``grid_sample`` in pure PyTorch, the path the tests hold it to.
The library's name carries a digest of the source, the compiler flags and the torch version, so an
edited source or another torch is never served by an old build: it falls back until rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "deform_sample.cpp"
BUILD = Path(__file__).with_name("_native")
X86 = platform.machine().lower() in ("x86_64", "amd64")
# -fopenmp: ATen's parallel_for is OpenMP in torch's CPU builds, and is serial without it. AVX2 with FMA
# (every x86-64 server CPU of the last decade) vectorizes the channel loops 8 floats wide; a CPU
# without them never loads the library (available()), since it would stop at the first instruction.
CFLAGS = ["-O3", "-fopenmp", *(["-mavx2", "-mfma"] if X86 else [])]
DISABLE = "CNNLAB_NO_NATIVE"  # set (to anything but "" or "0") to sample in pure PyTorch


def library_name() -> str:
    """The built library's name (without ``.so``): the source's, flags' and torch's digest in it."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(" ".join(CFLAGS).encode())
    digest.update(torch.__version__.encode())
    return f"cnnlab_deform_{digest.hexdigest()[:12]}"


def build(verbose: bool = False) -> Path:
    """Compile the kernel into ``BUILD``, remove the libraries of earlier sources, and return the
    library's path; raises what ``torch.utils.cpp_extension`` raises (no compiler, no ninja, a
    compile error)."""
    from torch.utils import cpp_extension

    BUILD.mkdir(exist_ok=True)
    name = library_name()
    cpp_extension.load(
        name,
        [str(SOURCE)],
        extra_cflags=CFLAGS,
        extra_ldflags=["-fopenmp"],
        build_directory=str(BUILD),
        is_python_module=False,
        verbose=verbose,
    )
    for old in BUILD.glob("cnnlab_deform_*.so"):  # builds of earlier sources, never loaded again
        if old.stem != name:
            old.unlink()
    return BUILD / f"{name}.so"


def runs_here() -> bool:
    """Whether this CPU has the instructions the library is compiled for (building it loads it too)."""
    return not X86 or torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@functools.cache
def available() -> bool:
    """Whether ``torch.ops.cnnlab.deform_sample`` is there: the built library loaded, once per process."""
    if os.environ.get(DISABLE, "") not in ("", "0"):
        return False
    if not runs_here():
        return False
    if hasattr(torch.ops.cnnlab, "deform_sample"):
        return True
    path = BUILD / f"{library_name()}.so"
    if not path.exists():
        return False
    try:
        torch.ops.load_library(str(path))
    except OSError:  # a library the loader refuses (e.g. built for another system): the fallback
        return False
    return True


def main(verbose: bool = False) -> int:
    """Build the kernel; one line either way. A failed build leaves the pure-PyTorch path, so the
    exit status is 1 for the caller to report, not to stop on."""
    if not runs_here():
        print("cnnlab: deformable convolution kernel not built (no AVX2/FMA here); pure PyTorch is used")
        return 1
    try:
        path = build(verbose=verbose)
    except (OSError, RuntimeError, ImportError) as error:  # no toolchain, or the compile failed
        print(f"cnnlab: deformable convolution kernel not built ({error}); pure PyTorch is used")
        return 1
    print(f"cnnlab: built {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0
