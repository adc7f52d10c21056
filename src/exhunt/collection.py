"""Read-only access to a triage collection: a folder or a .zip read in place.

Evidence is never modified, moved, extracted or executed. A zip is read member by member through
`zipfile`; members whose names would escape the collection (`../`, absolute paths) are reported and
skipped. Every path exhunt reports is relative to the collection root, with forward slashes.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from exhunt.errors import InputError


@dataclass(frozen=True)
class Entry:
    """One file in the collection."""

    path: str  # relative, forward slashes
    size: int
    mtime: datetime | None


@dataclass(frozen=True)
class Skipped:
    """A member that exists but was not read, and why."""

    path: str
    reason: str


class Collection:
    """A folder or a zip file of evidence. Use `open_collection()` to get one."""

    root: str
    name: str

    def entries(self) -> Iterator[Entry | Skipped]:
        raise NotImplementedError

    def open(self, path: str) -> BinaryIO:
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - trivial
        pass


class FolderCollection(Collection):
    """A directory tree on disk. Symbolic links are not followed."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.root = str(root)
        self.name = root.name or str(root)

    def entries(self) -> Iterator[Entry | Skipped]:
        for dirpath, dirnames, filenames in os.walk(self._root, followlinks=False, onerror=None):
            dirnames.sort()
            for fname in sorted(filenames):
                full = os.path.join(dirpath, fname)
                rel = os.path.relpath(full, self._root).replace(os.sep, "/")
                try:
                    st = os.lstat(full)
                except OSError as exc:
                    yield Skipped(rel, f"cannot stat: {exc.strerror or exc}")
                    continue
                if stat.S_ISLNK(st.st_mode):
                    yield Skipped(rel, "symbolic link not followed")
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                yield Entry(rel, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def open(self, path: str) -> BinaryIO:
        return open(self._root / path, "rb")


class ZipCollection(Collection):
    """A zip archive read in place; members are streamed, never extracted."""

    def __init__(self, path: Path) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise InputError(f"cannot read zip {path}: {exc}") from None
        self.root = str(path)
        self.name = path.stem
        self._names: dict[str, zipfile.ZipInfo] = {}

    def entries(self) -> Iterator[Entry | Skipped]:
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            name = info.filename.replace("\\", "/")
            safe = _safe_member_name(name)
            if safe is None:
                yield Skipped(name, "unsafe path in zip (absolute or '..'): not read")
                continue
            if info.flag_bits & 0x1:
                yield Skipped(safe, "encrypted zip member: not read")
                continue
            self._names[safe] = info
            try:
                mtime = datetime(*info.date_time, tzinfo=UTC)
            except ValueError:
                mtime = None
            yield Entry(safe, info.file_size, mtime)

    def open(self, path: str) -> BinaryIO:
        return self._zip.open(self._names[path])  # type: ignore[return-value]

    def close(self) -> None:
        self._zip.close()


def _safe_member_name(name: str) -> str | None:
    """Return a normalised relative name, or None if it would escape the collection."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def open_collection(path: Path) -> Collection:
    """Open a folder or zip; raise InputError (exit 2) if it cannot be read at all."""
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"folder is not readable: {path}")
        from exhunt import images  # disk images and mounted volumes: exhunt/images/

        if images.looks_like_mounted_volume(path):
            return images.open_mounted_collection(path)
        return FolderCollection(path)
    if not os.access(path, os.R_OK):
        raise InputError(f"file is not readable: {path}")
    if zipfile.is_zipfile(path):
        return ZipCollection(path)
    if path.suffix.lower() == ".zip":
        raise InputError(f"cannot read zip {path}: not a valid zip archive")
    from exhunt import images

    if images.looks_like_image(path):
        return images.open_image_collection(path)
    return SingleFileCollection(path)


class SingleFileCollection(Collection):
    """One loose log file given directly on the command line."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.root = str(path.parent)
        self.name = path.name

    def entries(self) -> Iterator[Entry | Skipped]:
        st = self._path.stat()
        yield Entry(self._path.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def open(self, path: str) -> BinaryIO:
        return open(self._path, "rb")
