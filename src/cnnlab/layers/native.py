"""The optional C++ kernel of deformable convolution's sampling (``csrc/deform_sample.cpp``).

``make`` builds it once with the system compiler (``python -m cnnlab.layers.native``, through
``torch.utils.cpp_extension``) into ``_native/`` beside this file; ``deform_conv.py`` loads it when
it is there and otherwise samples with ``grid_sample`` in pure PyTorch, the path the tests hold it to.
The library's name carries a digest of the source, the compiler flags and the torch version, so an
edited source or another torch is never served by an old build: it falls back until rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "deform_sample.cpp"
BUILD = Path(__file__).with_name("_native")
# -fopenmp: ATen's parallel_for is OpenMP in torch's CPU builds, and is serial without it.
CFLAGS = ["-O3", "-fopenmp", "-mavx2", "-mfma"]
DISABLE = "CNNLAB_NO_NATIVE"  # set (to anything but "" or "0") to sample in pure PyTorch


def library_name() -> str:
    """The built library's name (without ``.so``): the source's, flags' and torch's digest in it."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(" ".join(CFLAGS).encode())
    digest.update(torch.__version__.encode())
    return f"cnnlab_deform_{digest.hexdigest()[:12]}"


def build(verbose: bool = False) -> Path:
    """Compile the kernel into ``BUILD`` (raises what ``torch.utils.cpp_extension`` raises: no
    compiler, no ninja, a compile error) and return the library's path."""
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
    return BUILD / f"{name}.so"


@functools.cache
def available() -> bool:
    """Whether ``torch.ops.cnnlab.deform_sample`` is there: the built library loaded, once per process."""
    if os.environ.get(DISABLE, "") not in ("", "0"):
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


def main() -> int:
    """Build the kernel; one line either way. A failed build leaves the pure-PyTorch path, so the
    exit status is 1 for the caller to report, not to stop on."""
    try:
        path = build(verbose="-v" in sys.argv[1:])
    except (OSError, RuntimeError, ImportError) as error:  # no toolchain, or the compile failed
        print(f"cnnlab: deformable convolution kernel not built ({error}); pure PyTorch is used")
        return 1
    print(f"cnnlab: built {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
