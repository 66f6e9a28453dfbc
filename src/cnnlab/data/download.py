"""Fetching and unpacking dataset archives without trusting the network or the archive.

A download is written to a temporary file beside its destination and renamed into place only after
its MD5 matches, so a half-written or tampered file never sits where a loader would pick it up.
Archives are extracted only after every member has been checked, so a hostile archive writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PureWindowsPath
from typing import BinaryIO

from cnnlab.errors import DataError

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def md5sum(path: Path | str, chunk: int = _CHUNK) -> str:
    """The MD5 hex digest of a file, read in chunks so a large archive never sits in memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path | str, md5: str, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``, guaranteeing its content has MD5 ``md5``.

    Nothing is downloaded when ``dest`` already holds the right bytes. Otherwise the bytes go to a
    temporary file in ``dest``'s folder (same file system, so the final rename is atomic) and are
    hashed as they arrive; a wrong checksum, a network failure or an interruption removes the
    temporary file, so ``dest`` is either absent, untouched or complete and verified.
    """
    dest = Path(dest)
    expected = md5.strip().lower()
    if dest.is_file() and md5sum(dest) == expected:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise DataError(f"cannot write to {dest.parent}: {e}; choose a writable data folder") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _fetch(url, out, dest, progress)
        if actual != expected:
            raise DataError(
                f"download of {url} is corrupt: expected MD5 {expected}, got {actual}; "
                f"try again, or download it by hand and put it at {dest}"
            )
        os.replace(tmp, dest)
    finally:
        # Covers every exit, KeyboardInterrupt included: a partial file is never left behind.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest


def _fetch(url: str, out: BinaryIO, dest: Path, progress: bool) -> str:
    """Stream ``url`` into the open binary file ``out`` and return the MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)
            while block := response.read(_CHUNK):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress:
                    _report(dest.name, done, total)
    except urllib.error.URLError as e:
        raise DataError(
            f"could not download {url}: {e.reason}; download it by hand and put it at {dest}"
        ) from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise DataError(f"could not download {url}: {e}; download it by hand and put it at {dest}") from e
    finally:
        if progress and done:
            print(file=sys.stderr)
    return digest.hexdigest()


def _report(name: str, done: int, total: int) -> None:
    """One self-overwriting progress line on stderr (stdout stays clean for piped output)."""
    mb = done / 1e6
    line = f"\r  {name}: {mb:.1f} / {total / 1e6:.1f} MB" if total else f"\r  {name}: {mb:.1f} MB"
    print(line, end="", file=sys.stderr, flush=True)


def safe_extract_tar(archive: Path | str, dest: Path | str) -> None:
    """Extract a tar or tar.gz archive into ``dest``, refusing any member that could escape it.

    Every member is checked before anything is written: absolute names, ``..`` components, links
    whose target leaves ``dest``, paths that pass through a link in the archive, and device or FIFO
    members are refused with a `DataError` naming the member. This check stands on its own; where
    Python has ``tarfile``'s ``"data"`` filter it is applied as well, as a second line of defence.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()  # reads every header, so a truncated archive fails here
            root = os.path.realpath(dest)
            links = {"/".join(_parts(m.name)) for m in members if m.issym() or m.islnk()}
            for member in members:
                _check_member(member, root, links, archive)
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without the PEP 706 backport
                tf.extractall(dest, members=members)
    except DataError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"cannot extract {archive}: {e}; "
            f"delete it and download it again, or check that {dest} is writable"
        ) from e


def _parts(name: str) -> list[str]:
    """Path components of an archive name, with empty and ``.`` components dropped."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _walk(start: list[str], rel: str, links: set[str]) -> list[str] | None:
    """Follow ``rel`` from the folder ``start`` (both relative to the destination), lexically.

    Returns the resulting components, or None when the walk climbs above the destination or steps
    *through* a link of the archive: after extraction such a step would follow the link on disk,
    so its real target cannot be judged from the names alone (the symlink-then-write escape).
    """
    stack = list(start)
    for part in _parts(rel):
        if stack and "/".join(stack) in links:
            return None
        if part == "..":
            if not stack:
                return None
            stack.pop()
        else:
            stack.append(part)
    return stack


def _check_member(member: tarfile.TarInfo, root: str, links: set[str], archive: Path) -> None:
    """Raise `DataError` unless extracting ``member`` under ``root`` provably stays inside ``root``."""

    def refuse(why: str) -> DataError:
        return DataError(
            f"refusing to extract {archive}: member {member.name!r} {why}; the archive is not trustworthy"
        )

    name = member.name
    if not name or "\x00" in name:
        raise refuse("has an invalid name")
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise refuse("has an absolute path")
    if ".." in _parts(name):
        raise refuse("has a '..' component")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise refuse("is a device or FIFO")
    path = _walk([], name, links)
    if path is None:
        raise refuse("is written through a link in the archive")
    # realpath also follows links already on disk in dest (left there by an earlier extraction).
    if not _inside(os.path.realpath(os.path.join(root, *path)), root):
        raise refuse("resolves outside the destination")
    if member.issym() or member.islnk():
        link = member.linkname
        if not link or link.startswith(("/", "\\")) or PureWindowsPath(link).drive:
            raise refuse(f"is a link with an absolute or empty target ({link!r})")
        # Symlink targets are relative to the member's folder, hard-link targets to the archive root.
        target = _walk(path[:-1] if member.issym() else [], link, links)
        if target is None or not _inside(os.path.realpath(os.path.join(root, *target)), root):
            raise refuse(f"is a link pointing outside the destination ({link!r})")


def _inside(path: str, root: str) -> bool:
    """Whether the absolute ``path`` is ``root`` or lies under it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
