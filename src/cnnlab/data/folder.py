"""Any folder of images with one sub-folder per class, as a `Dataset`.

Class order is the sorted sub-folder names, so label indices are stable across runs and machines.
A ``train/`` folder beside ``val/`` or ``test/`` gives the split; otherwise a fixed stratified split
is drawn. Every image is decoded once, with PIL, into one preallocated uint8 tensor.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.data.base import Dataset, check_memory, stratified_split
from cnnlab.errors import DataError

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_SIZE = 64
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_SIXTEEN_BIT = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_IGNORED_DIRS = frozenset({"__MACOSX"})
_RESAMPLING = getattr(Image, "Resampling", Image)  # Pillow < 9.1 has no Resampling enum
_BILINEAR = _RESAMPLING.BILINEAR
INTERPOLATIONS = {"bilinear": _RESAMPLING.BILINEAR, "bicubic": _RESAMPLING.BICUBIC}


def _class_dirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name: the classes, in label order."""
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in _IGNORED_DIRS
        ),
        key=lambda p: p.name,
    )


def _image_files(class_dir: Path) -> list[Path]:
    """Image files anywhere under ``class_dir`` (hidden files and folders skipped, links to folders
    not followed), sorted as paths sort. Walked with scandir: a folder of a million files is listed
    in seconds, not minutes."""
    found: list[tuple[list[str], str]] = []
    stack: list[tuple[str, list[str]]] = [(str(class_dir), [])]
    while stack:
        top, parts = stack.pop()
        try:
            listing = os.scandir(top)
        except PermissionError:  # a folder the user may not read is passed over, as pathlib's glob does
            continue
        with listing as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, [*parts, entry.name]))
                elif os.path.splitext(entry.name)[1].lower() in EXTENSIONS and entry.is_file():
                    found.append(([*parts, entry.name], entry.path))
    return [Path(path) for _, path in sorted(found)]


def _scan(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and (file, label) pairs of one split folder; every class must have images."""
    dirs = _class_dirs(folder)
    if not dirs:
        raise DataError(f"no class folders in {folder}: put each class's images in a sub-folder of its own")
    files: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(dirs):
        found = _image_files(class_dir)
        if not found:
            raise DataError(
                f"class folder {class_dir} has no images ({', '.join(sorted(EXTENSIONS))}); "
                "add some or remove the folder"
            )
        files += [(f, label) for f in found]
    return [d.name for d in dirs], files


def _flatten_alpha(im: Image.Image) -> Image.Image:
    """Composite an image with transparency onto white, so hidden pixels cannot leak into the data."""
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba)


def _to_mode(im: Image.Image, gray: bool) -> Image.Image:
    """Convert to 8-bit ``L`` (when ``gray``) or ``RGB``; 16-bit values are scaled, not clipped."""
    target = "L" if gray else "RGB"
    if im.mode in _SIXTEEN_BIT:
        # PIL's own conversion clips 16-bit values at 255, which turns most 16-bit images white.
        values = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")
    elif im.mode in _ALPHA_MODES or "transparency" in im.info:
        im = _flatten_alpha(im)
    return im if im.mode == target else im.convert(target)


def _resize_crop(
    im: Image.Image, size: int | tuple[int, int], resize: int | None = None, resample: int = _BILINEAR
) -> Image.Image:
    """Scale so the image just covers ``size`` (for a square: shorter side to ``size``), or, with
    ``resize``, so its shorter side is ``resize`` (ImageNet's evaluation: 256, then a 224 crop); then
    cut the centre (height, width). Pillow filters over the whole footprint when shrinking, so this
    is antialiased."""
    th, tw = (size, size) if isinstance(size, int) else size
    w, h = im.size
    if resize is None:
        if (w, h) == (tw, th):
            return im
        scale = max(th / h, tw / w)
        nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    else:  # the longer side is truncated, as torchvision's Resize does
        nw, nh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample)
    if nw < tw or nh < th:
        raise ValueError(f"resized to {nw}x{nh}, smaller than the {tw}x{th} crop")
    left, top = (nw - tw) // 2, (nh - th) // 2
    return im.crop((left, top, left + tw, top + th))


def decode(
    path: Path,
    gray: bool,
    size: int | tuple[int, int] | None,
    resize: int | None = None,
    resample: int = _BILINEAR,
) -> np.ndarray:
    """Fully decode one file to a (H, W) or (H, W, 3) uint8 array (raises on a corrupt file)."""
    with Image.open(path) as im:
        im.load()
        out = _to_mode(im, gray)
        if size is not None:
            out = _resize_crop(out, size, resize, resample)
        return np.array(out, dtype=np.uint8)  # a writable copy, which torch.from_numpy wants


def read_image(
    path: Path | str,
    channels: int,
    size: tuple[int, int],
    resize: int | None = None,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """One image file as a (channels, H, W) uint8 tensor, converted and resized as image folders are,
    or, with ``resize``, shorter side to ``resize`` and the centre ``size`` cut out.

    ``channels`` is 1 (grayscale) or 3 (RGB); ``interpolation`` is one of INTERPOLATIONS. A missing
    or unreadable file raises DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no image file at {path}")
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
    try:
        pixels = decode(path, channels == 1, size, resize, INTERPOLATIONS[interpolation])
    except IMAGE_ERRORS as e:
        if isinstance(e, OSError) and e.errno is not None:  # the file system's, not the image's
            raise DataError(f"cannot read {path}: {e.strerror or e}") from None
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    tensor = torch.from_numpy(pixels)
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


# What PIL and its format plugins raise for a file that is not a readable image: its own errors
# (UnidentifiedImageError and truncated data are OSErrors without an errno) and the parsers' own.
# Not MemoryError, and not an OSError of the file system (permissions, EIO): those are no bad image.
IMAGE_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError,
    ZeroDivisionError, NotImplementedError, Image.DecompressionBombError,
)  # fmt: skip


def bad_file(path: Path, error: Exception, strict: bool) -> None:
    """Refuse (``strict``) or skip with a warning a file PIL cannot read; a file the system cannot
    read (no permission, an I/O error) is refused whatever ``strict`` says."""
    if isinstance(error, OSError) and error.errno is not None:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    message = f"cannot read image {path}: {type(error).__name__}: {error}"
    if strict:
        raise DataError(f"{message}; delete or replace it, or pass strict=False to skip it")
    warnings.warn(f"{message}; skipping it", stacklevel=3)


def load_folder(
    path: Path | str,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    *,
    strict: bool = False,
    resize_side: int | None = None,
    interpolation: str = "bilinear",
) -> Dataset:
    """Load an image folder (one sub-folder per class) as a `Dataset`.

    With ``path/train/`` plus ``path/val/`` (preferred) or ``path/test/`` those are the splits, and
    both must have the same classes; ``path/train/`` alone, or a plain class folder layout, is split
    with a fixed stratified draw of ``test_fraction`` per class (``seed`` fixes it). Images are 1
    channel if every one is grayscale, else RGB (transparency composited onto white). Sizes are kept
    when all images share one and ``image_size`` is None; otherwise each image's shorter side is
    resized to ``image_size`` (default 64) and the centre square cropped, or, with ``resize_side``,
    resized to ``resize_side`` (with ``interpolation``, see INTERPOLATIONS) before the centre
    ``image_size`` square is cropped, as ImageNet models are evaluated. A file PIL cannot read is
    skipped with a warning, or raises with ``strict=True``.
    """
    root = Path(path).expanduser()
    check_arguments(root, image_size, test_fraction, interpolation)
    train_dir, test_dir, classes, files = scan_splits(root)
    entries, modes, sizes = _headers(files, strict)
    if not entries:
        raise DataError(f"no readable images in {root}")
    shape, size = choose_shape(modes, sizes, image_size)
    check_memory(len(entries) * shape[0] * shape[1] * shape[2], f"{root} ({len(entries):,} images)")
    if test_dir is None:
        entries = draw_split(entries, test_fraction, seed)
    images, labels, is_test = _decode_all(entries, shape, size, resize_side, interpolation, strict)
    present = set(labels[~is_test].tolist())
    for i, name in enumerate(classes):
        if i not in present:
            raise DataError(f"class folder {train_dir / name} has no readable training images")
    train_idx, test_idx = torch.nonzero(~is_test).flatten(), torch.nonzero(is_test).flatten()
    return Dataset(
        root.resolve().name,
        images[train_idx],
        labels[train_idx],
        images[test_idx],
        labels[test_idx],
        classes=classes,
        hflip=True,
    )


def choose_shape(
    modes: set[str], sizes: set[tuple[int, int]], image_size: int | None
) -> tuple[tuple[int, int, int], int | None]:
    """The (C, H, W) every image is made, and the side each is resized to (None: kept as it is)
    from the images' modes and (width, height) sizes: 1 channel if every one is grayscale."""
    size = image_size
    if size is None and len(sizes) > 1:
        size = DEFAULT_SIZE  # mixed sizes must be made equal; one shared size is kept as it is
    channels = 1 if modes <= _GRAY_MODES else 3
    return (channels, *((size, size) if size is not None else next(iter(sizes))[::-1])), size


def check_arguments(root: Path, image_size: int | None, test_fraction: float, interpolation: str) -> None:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")


def draw_split(
    entries: list[tuple[Path, int, bool]], test_fraction: float, seed: int
) -> list[tuple[Path, int, bool]]:
    """The entries of a folder without a test split, each marked test or not by a fixed stratified
    draw over the files whose headers read: a file that then fails to decode leaves its own split,
    and packing (pack.py), which decodes in chunks, draws the very same split."""
    labels = torch.tensor([label for _, label, _ in entries], dtype=torch.int64)
    test = torch.zeros(len(entries), dtype=torch.bool)
    test[stratified_split(labels, test_fraction, seed)[1]] = True
    return [(path, label, flag) for (path, label, _), flag in zip(entries, test.tolist(), strict=True)]


def scan_splits(root: Path) -> tuple[Path, Path | None, list[str], list[tuple[Path, int, bool]]]:
    """The training folder, the test folder if the layout has one, the classes and every
    (file, label, is_test)."""
    train_dir, test_dir = root, None
    if (root / "train").is_dir():
        train_dir = root / "train"
        test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    classes, train_files = _scan(train_dir)
    test_files: list[tuple[Path, int]] = []
    if test_dir is not None:
        test_classes, test_files = _scan(test_dir)
        if test_classes != classes:
            only_train = sorted(set(classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(classes))
            raise DataError(
                f"{train_dir} and {test_dir} must hold the same class folders: only in train {only_train}, "
                f"only in {test_dir.name} {only_test}"
            )
    files = [(f, label, False) for f, label in train_files] + [(f, label, True) for f, label in test_files]
    return train_dir, test_dir, classes, files


def _headers(
    files: list[tuple[Path, int, bool]], strict: bool
) -> tuple[list[tuple[Path, int, bool]], set[str], set[tuple[int, int]]]:
    """Read the headers first (cheap) to choose channels and size for the whole dataset: the
    readable entries, their modes and their sizes."""
    entries, modes, sizes = [], set(), set()
    for entry in files:
        try:
            with Image.open(entry[0]) as im:
                modes.add(im.mode)
                sizes.add(im.size)
        except IMAGE_ERRORS as e:
            bad_file(entry[0], e, strict)
            continue
        entries.append(entry)
    return entries, modes, sizes


def _decode_all(
    entries: list[tuple[Path, int, bool]],
    shape: tuple[int, int, int],
    size: int | None,
    resize_side: int | None,
    interpolation: str,
    strict: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every image decoded into one preallocated uint8 tensor: images, labels and the test mask."""
    c, h, w = shape
    images = torch.empty((len(entries), c, h, w), dtype=torch.uint8)
    labels, is_test, kept = [], [], 0
    for file, label, test in entries:
        try:
            array = decode(file, c == 1, size, resize_side, INTERPOLATIONS[interpolation])
            if array.shape[:2] != (h, w):
                raise ValueError(f"decoded size {array.shape[1]}x{array.shape[0]} differs from its header")
        except IMAGE_ERRORS as e:
            bad_file(file, e, strict)
            continue
        pixels = torch.from_numpy(array)
        images[kept] = pixels.unsqueeze(0) if c == 1 else pixels.permute(2, 0, 1)
        labels.append(label)
        is_test.append(test)
        kept += 1
    images = images[:kept].clone() if kept < len(entries) else images
    return images, torch.tensor(labels, dtype=torch.int64), torch.tensor(is_test, dtype=torch.bool)
