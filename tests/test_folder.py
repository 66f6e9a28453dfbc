"""Image folders: class sub-folders, sizes, modes, broken files and splits."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.data import base
from cnnlab.data.folder import load_folder
from cnnlab.errors import DataError


def save(path: Path, mode: str, size: tuple[int, int], color) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def image_folder(root: Path) -> Path:
    """3 classes x 5 PNGs of mixed sizes and modes, a text file, a hidden file, one corrupt PNG."""
    for c, name in enumerate(["cat", "dog", "fox"]):
        for i in range(5):
            mode = "RGB" if (c + i) % 2 else "L"
            save(root / name / f"{i}.png", mode, (20 + 4 * i, 24), (50 * c,) * len(mode))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.png").write_bytes(b"junk")  # ignored silently, though unreadable
    (root / "fox" / "broken.png").write_bytes((root / "fox" / "0.png").read_bytes()[:40])
    return root


def test_folder_defaults_skip_corrupt_and_split(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    with pytest.warns(UserWarning, match=r"broken\.png") as record:
        ds = load_folder(root)
    assert len(record) == 1
    assert ds.name == "pets" and ds.classes == ["cat", "dog", "fox"] and ds.hflip
    assert ds.train_images.shape == (12, 3, 64, 64) and ds.test_images.shape == (3, 3, 64, 64)
    assert torch.bincount(ds.test_labels, minlength=3).tolist() == [1, 1, 1]  # 20% of each class
    assert torch.bincount(ds.train_labels, minlength=3).tolist() == [4, 4, 4]
    # Solid images stay solid through resize and crop: class c is gray level 50 * c.
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        assert torch.equal(images.amax(dim=(1, 2, 3)), (labels * 50).to(torch.uint8))
        assert torch.equal(images.amin(dim=(1, 2, 3)), (labels * 50).to(torch.uint8))


def test_folder_strict_raises_on_corrupt(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_folder(root, strict=True)


def test_folder_same_size_grayscale_kept_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ["a", "b"]:
        for i in range(5):
            arrays[(name, i)] = rng.integers(0, 256, (12, 16), dtype=np.uint8)  # H=12, W=16
            path = tmp_path / "g" / name / f"{i}.PNG"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arrays[(name, i)], "L").save(path, format="PNG")
    ds = load_folder(tmp_path / "g", test_fraction=0.4, seed=3)
    assert ds.in_chans == 1 and ds.image_size == (12, 16)
    assert len(ds.test_labels) == 4 and torch.bincount(ds.test_labels).tolist() == [2, 2]
    everything = torch.cat([ds.train_images, ds.test_images])[:, 0].numpy()
    for array in arrays.values():
        assert any(np.array_equal(array, got) for got in everything)
    assert torch.equal(load_folder(tmp_path / "g", test_fraction=0.4, seed=3).test_images, ds.test_images)


def test_folder_resize_is_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    im = np.zeros((20, 60, 3), dtype=np.uint8)  # H=20, W=60: red | green | blue thirds
    im[:, :20, 0] = im[:, 20:40, 1] = im[:, 40:, 2] = 255
    for c in ["a", "b"]:
        (tmp_path / "f" / c).mkdir(parents=True)
        Image.fromarray(im).save(tmp_path / "f" / c / "x.png")
    ds = load_folder(tmp_path / "f", image_size=10, test_fraction=0.0)
    assert ds.train_images.shape == (2, 3, 10, 10) and len(ds.test_labels) == 0
    assert ds.train_images[0, :, 5, 5].tolist() == [0, 255, 0]  # the centre third survives, pure green


def test_folder_transparency_and_16_bit(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    (tmp_path / "t" / "a").mkdir(parents=True)
    (tmp_path / "t" / "b").mkdir(parents=True)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t" / "a" / "x.png")
    Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(tmp_path / "t" / "b" / "x.png")
    ds = load_folder(tmp_path / "t", test_fraction=0.0)
    assert ds.train_images[0].unique().tolist() == [255]  # composited onto white
    (tmp_path / "w" / "a").mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)).save(tmp_path / "w" / "a" / "x.png")
    ds = load_folder(tmp_path / "w", test_fraction=0.0)
    assert ds.in_chans == 1 and ds.train_images.unique().tolist() == [100]  # scaled, not clipped to 255


def test_folder_train_val_layout(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 2)):
        for c in ["x", "y"]:
            for i in range(n):
                save(tmp_path / "d" / split / c / f"{i}.jpg", "RGB", (8, 8), (10, 20, 30))
    ds = load_folder(tmp_path / "d")
    assert len(ds.train_labels) == 8 and len(ds.test_labels) == 4 and ds.classes == ["x", "y"]
    assert ds.test_labels.tolist() == [0, 0, 1, 1]
    save(tmp_path / "d" / "val" / "z" / "0.jpg", "RGB", (8, 8), (0, 0, 0))
    with pytest.raises(DataError, match=r"only in val \['z'\]"):
        load_folder(tmp_path / "d")


def test_folder_empty_class_and_no_classes(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    (root / "emu").mkdir()
    (root / "emu" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match=r"class folder .*emu has no images"):
        load_folder(root)
    save(tmp_path / "flat" / "a.png", "RGB", (4, 4), (0, 0, 0))
    with pytest.raises(DataError, match="no class folders"):
        load_folder(tmp_path / "flat")


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_folder_imagenet_evaluation_resize(tmp_path: Path, interpolation: str) -> None:
    """resize_side: shorter side to 40 (the longer one truncated: 60 * 40 / 36 = 66.7 -> 66), then
    the centre 32 x 32, as torchvision's Resize(40) and CenterCrop(32) do."""
    rgb = np.random.default_rng(0).integers(0, 256, (36, 60, 3), dtype=np.uint8)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(rgb).save(tmp_path / name / "0.png")
        Image.fromarray(rgb[::-1]).save(tmp_path / name / "1.png")
    ds = load_folder(tmp_path, image_size=32, test_fraction=0.5, resize_side=40, interpolation=interpolation)
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[interpolation]
    expected = np.array(Image.fromarray(rgb).resize((66, 40), resample).crop((17, 4, 49, 36)))
    images = torch.cat([ds.train_images, ds.test_images])
    assert any(torch.equal(im, torch.from_numpy(expected).permute(2, 0, 1)) for im in images)
    with pytest.raises(DataError, match="interpolation"):
        load_folder(tmp_path, image_size=32, interpolation="nearest")


def _failing_open(monkeypatch: pytest.MonkeyPatch, victim: str, error: BaseException) -> None:
    """Image.open raises ``error`` for the file named ``victim``, as the system would."""
    real = Image.open

    def fake_open(fp, *args, **kwargs):
        if Path(fp).name == victim:
            raise error
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", fake_open)


@pytest.mark.parametrize(
    "error",
    [PermissionError(errno.EACCES, "Permission denied"), OSError(errno.EIO, "Input/output error")],
    ids=["permission", "eio"],
)
def test_a_file_the_system_cannot_read_is_refused_not_skipped(tmp_path, monkeypatch, error) -> None:
    root = image_folder(tmp_path / "pets")
    _failing_open(monkeypatch, "3.png", error)
    with pytest.raises(DataError, match=rf"cannot read .*3\.png: {error.strerror}"):
        load_folder(root)


def test_memory_error_is_no_bad_image(tmp_path, monkeypatch) -> None:
    root = image_folder(tmp_path / "pets")
    _failing_open(monkeypatch, "3.png", MemoryError())
    with pytest.raises(MemoryError):
        load_folder(root)


@pytest.mark.filterwarnings("ignore:cannot read image .*broken")  # skipped as always
def test_an_unidentifiable_image_is_still_skipped(tmp_path, monkeypatch) -> None:  # the control
    root = image_folder(tmp_path / "pets")
    _failing_open(monkeypatch, "3.png", UnidentifiedImageError("cannot identify image file"))
    with pytest.warns(UserWarning, match=r"3\.png"):
        ds = load_folder(root)
    assert len(ds.train_labels) + len(ds.test_labels) == 16 - 3 - 1  # three 3.png, broken.png


@pytest.mark.filterwarnings("ignore:cannot read image")  # broken.png, skipped as always
def test_a_folder_too_large_for_memory_is_refused_before_allocating(tmp_path, monkeypatch) -> None:
    root = image_folder(tmp_path / "pets")
    monkeypatch.setattr(base, "available_memory", lambda: 100_000)  # 15 images of 3x64x64 need 184 kB
    with pytest.raises(DataError, match=r"would take 0\.0 GB of memory.*--image-size"):
        load_folder(root)
    monkeypatch.setattr(base, "available_memory", lambda: 10_000_000)
    assert len(load_folder(root, strict=False).classes) == 3
