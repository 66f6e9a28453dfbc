"""Safe archive extraction and checksum-verified downloads; nothing touches the network."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest

from cnnlab.data.download import download, md5sum, safe_extract_tar
from cnnlab.errors import DataError


def hostile_archive(path: Path, outside: Path, case: str) -> Path:
    def info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x"):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
        return ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None

    members = [info("top/good.txt")]  # a harmless member first: it must not be extracted either
    members += {
        "dotdot": [info("top/../../evil.txt")],
        "absolute": [info(str(outside / "evil.txt"))],
        "symlink_relative": [info("top/link", tarfile.SYMTYPE, "../../outside")],
        "symlink_absolute": [info("top/link", tarfile.SYMTYPE, str(outside))],
        "write_through_symlink": [info("d", tarfile.SYMTYPE, str(outside)), info("d/evil.txt")],
        "symlink_chain": [
            info("sub", tarfile.DIRTYPE),
            info("b", tarfile.SYMTYPE, "sub/.."),
            info("a", tarfile.SYMTYPE, "b/.."),
        ],
        "hardlink": [info("top/h", tarfile.LNKTYPE, "../outside/secret")],
        "device": [info("top/dev", tarfile.CHRTYPE)],
    }[case]
    with tarfile.open(path, "w:gz") as tf:
        for ti, data in members:
            tf.addfile(ti, data)
    return path


HOSTILE = [
    "dotdot",
    "absolute",
    "symlink_relative",
    "symlink_absolute",
    "write_through_symlink",
    "symlink_chain",
    "hardlink",
    "device",
]


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("data_filter", [True, False])
def test_hostile_tar_extracts_nothing(tmp_path: Path, monkeypatch, case: str, data_filter: bool) -> None:
    if not data_filter:  # as on a Python without PEP 706: the member check alone must hold
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    archive = hostile_archive(tmp_path / "evil.tar.gz", outside, case)
    dest = tmp_path / "x" / "dest"
    with pytest.raises(DataError, match=r"refusing to extract .*member"):
        safe_extract_tar(archive, dest)
    assert not dest.exists()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "outside"]


@pytest.mark.parametrize("data_filter", [True, False])
def test_benign_tar_with_inner_symlink_extracts(tmp_path: Path, monkeypatch, data_filter: bool) -> None:
    if not data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with tarfile.open(tmp_path / "ok.tar", "w") as tf:
        ti = tarfile.TarInfo("top/a.txt")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("top/alias")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        tf.addfile(link)
    safe_extract_tar(tmp_path / "ok.tar", tmp_path / "out")
    assert (tmp_path / "out" / "top" / "alias").read_text() == "hi"


def test_download_verifies_and_skips_when_present(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3_000_000))
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = tmp_path / "dl" / "file.bin"
    assert download(src.as_uri(), dest, md5, progress=False) == dest
    assert dest.read_bytes() == src.read_bytes() and md5sum(dest) == md5
    # Already there with the right checksum: the (now broken) URL is never opened.
    assert download((tmp_path / "gone").as_uri(), dest, md5.upper(), progress=False) == dest
    assert os.listdir(tmp_path / "dl") == ["file.bin"]


def test_download_wrong_md5_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    url = src.as_uri()
    with pytest.raises(DataError, match=rf"{url}.*expected MD5 f{{32}}, got {md5sum(src)}"):
        download(url, tmp_path / "dl" / "file.bin", "f" * 32, progress=False)
    assert os.listdir(tmp_path / "dl") == []


def test_download_network_failure(tmp_path: Path) -> None:
    url = (tmp_path / "missing.bin").as_uri()
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(DataError, match=rf"could not download {url}: .*by hand and put it at {dest}"):
        download(url, dest, "0" * 32, progress=False)
    assert os.listdir(tmp_path / "dl") == []


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), KeyboardInterrupt()])
def test_interrupted_download_leaves_nothing(tmp_path: Path, monkeypatch, error: BaseException) -> None:
    class Response(io.BytesIO):
        headers: ClassVar[dict[str, str]] = {"Content-Length": "100"}

        def read(self, n: int = -1) -> bytes:
            if self.tell() >= 10:
                raise error
            return super().read(10)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"0" * 100))
    with pytest.raises(DataError if isinstance(error, Exception) else KeyboardInterrupt):
        download("https://example.invalid/f.bin", tmp_path / "f.bin", "0" * 32, progress=True)
    assert os.listdir(tmp_path) == []
