"""Read-only access to a triage collection: a folder, a .zip read in place, or one loose file.

Evidence is never modified, moved, extracted or executed, and every input is accounted for: what
`entries()` yields is either an `Entry` (read) or a `Skipped` (not read, or read only in part, and
why), so nothing on disk or in an archive is absent from both the artifacts and `errors[]`.

- Folders are walked without following symbolic links; links (to files, to folders, loops),
  FIFOs, sockets and devices are listed and never opened; folders and files that cannot be read
  are listed with the reason; pseudo file systems (`/proc`, `/sys`, ...) are not entered.
- Files are opened read-only with `O_NOATIME` where the OS allows it (the owner or root), so a
  scan leaves even access times unchanged, and `O_NOFOLLOW | O_NONBLOCK`: anything that is not a
  regular file at open time is refused.
- Zip members are streamed within a budget (`MEMBER_LIMIT`, `RATIO_LIMIT`): a member past it is
  read up to the cap and listed as partly read. Members whose names escape the collection
  (`../`, absolute paths) or that are encrypted are listed and not read. A member whose data ends
  before its declared size is an error on that member.
- Duplicate member names (also `./P` vs `P`, `\\` vs `/`) are all read: the first copy keeps its
  name `P`, the second is `P#2`, the third `P#3` (the index is bumped past any real name); the
  member's own name stays in `Entry.name` for the layout (host, Windows path, extension).
- Zips inside the collection (named `*.zip`) are opened to `MAX_ARCHIVE_DEPTH` levels; their
  members appear as `folder/outer.zip/inner.zip/member`. The archive file itself is also an Entry.
- Names that are not valid UTF-8 are carried as escaped text (`\\xff`); the collection maps them
  back to the real name when opening.

Every path exhunt reports is relative to the collection root, with forward slashes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from exhunt.errors import InputError

MAX_ARCHIVE_DEPTH = 2  # zips inside the collection: an inner zip (1) and a zip inside that (2)
MEMBER_LIMIT = 4 << 30  # bytes read from one zip member at most
RATIO_LIMIT = 100  # a member may expand to this many times its compressed size ...
RATIO_FLOOR = 64 << 20  # ... or to this many bytes, whichever is larger
INNER_ZIP_LIMIT = 256 << 20  # an inner zip held in a zip is copied to a temporary file up to this size
INNER_ZIP_BUDGET = 1 << 30  # and all of them together up to this
SPOOL_IN_MEMORY = 16 << 20

PSEUDO_FILESYSTEMS = frozenset(
    [
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "debugfs",
        "tracefs",
        "securityfs",
        "pstore",
        "bpf",
        "configfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "efivarfs",
        "binfmt_misc",
        "autofs",
        "rpc_pipefs",
        "nsfs",
        "selinuxfs",
    ]
)
_SPECIAL = (
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISDOOR, "door"),
)


@dataclass(frozen=True)
class Entry:
    """One file in the collection."""

    path: str  # relative, forward slashes; unique in the collection (a duplicate zip name: `P#2`)
    size: int  # bytes that will be read (a zip member past its budget: the cap)
    mtime: datetime | None
    name: str | None = None  # the member's own name when `path` carries a copy index
    inner: bool = False  # a member of an archive inside the collection (its bytes are the archive's too)

    @property
    def logical_path(self) -> str:
        """The path as the archive or disk spells it (without a copy index): for the layout."""
        return self.name or self.path


@dataclass(frozen=True)
class Skipped:
    """Something that exists but was not read, or was read only in part, and why."""

    path: str
    reason: str


def escaped_name(name: str) -> str:
    """A file name as text: bytes that are not valid UTF-8 (surrogate-escaped by the OS layer) become `\\xNN`."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def open_readonly(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file for reading without following a final symlink, without blocking on a
    FIFO and without touching its access time (O_NOATIME, when the OS allows it). Anything that
    is not a regular file at open time is refused with OSError."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(path, flags | noatime)
    except PermissionError as exc:  # O_NOATIME needs the file's owner (or root): EPERM otherwise
        if not noatime or exc.errno != errno.EPERM:
            raise
        fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_kind(mode)}): not opened", os.fspath(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return next((what for test, what in _SPECIAL if test(mode)), "special file")


@dataclass
class _Member:
    archive: zipfile.ZipFile
    info: zipfile.ZipInfo
    cap: int


class Collection:
    """A folder, zip or file of evidence. Use `open_collection()` to get one."""

    root: str
    name: str

    def __init__(self) -> None:
        self._members: dict[str, _Member] = {}
        self._used: set[str] = set()
        self._inventory: list[Entry | Skipped] | None = None
        self._closing: list[Any] = []
        self._spooled = 0

    def entries(self) -> Iterator[Entry | Skipped]:
        """Every file (Entry) and everything not read or read in part (Skipped), in path order."""
        if self._inventory is None:
            self._inventory = list(self._scan())
        return iter(self._inventory)

    def _scan(self) -> Iterator[Entry | Skipped]:
        raise NotImplementedError

    def local_path(self, path: str) -> str | None:
        """The file system path of a plain file of the collection (another process may open it), or
        None for an archive member or a file inside a disk image."""
        return None

    def open(self, path: str) -> BinaryIO:
        member = self._members.get(path)
        if member is None:
            raise KeyError(path)
        return _open_member(member, path)

    def close(self) -> None:
        for thing in reversed(self._closing):
            with contextlib.suppress(Exception):  # closing is best effort
                thing.close()
        self._closing.clear()

    # -- zip archives (the collection itself or zips inside it) --------------------------------
    def _unique(self, path: str) -> str:
        """`path`, or `path#2`, `path#3`, ... when it is taken."""
        candidate, n = path, 1
        while candidate in self._used:
            n += 1
            candidate = f"{path}#{n}"
        self._used.add(candidate)
        return candidate

    def _zip_entries(self, archive: zipfile.ZipFile, prefix: str, depth: int) -> Iterator[Entry | Skipped]:
        """The members of an open zip whose own path in the collection is `prefix` ('' for the collection)."""
        infos = [i for i in archive.infolist() if not i.is_dir()]
        for info in infos:
            raw = info.filename.replace("\\", "/")
            safe = _safe_member_name(raw)
            if safe is None:
                yield Skipped(prefix + raw, "unsafe path in zip (absolute or '..'): not read")
                continue
            logical = prefix + safe
            path = self._unique(logical)
            if info.flag_bits & 0x1:
                yield Skipped(path, "encrypted zip member: not read")
                continue
            cap = min(MEMBER_LIMIT, max(RATIO_FLOOR, RATIO_LIMIT * max(info.compress_size, 1)))
            size = info.file_size
            if size > cap:
                ratio = size / max(info.compress_size, 1)
                yield Skipped(
                    path,
                    f"partly read: the zip member declares {size:,} bytes ({ratio:,.0f}x its compressed "
                    f"{info.compress_size:,}), over the budget of {cap:,} bytes; the first {cap:,} bytes read",
                )
                size = cap
            self._members[path] = _Member(archive, info, cap)
            try:
                mtime = datetime(*info.date_time, tzinfo=UTC)
            except ValueError:
                mtime = None
            yield Entry(path, size, mtime, None if path == logical else logical, inner=depth > 0)
            if is_zip_name(safe):
                yield from self._inner_zip(path, depth + 1, lambda path=path: self.open(path), info.file_size)

    def _inner_zip(self, path: str, depth: int, opener: Any, size: int, on_disk: bool = False) -> Iterator[Skipped]:
        """Open a zip found inside the collection and list its members (to MAX_ARCHIVE_DEPTH)."""
        if depth > MAX_ARCHIVE_DEPTH:
            yield Skipped(path, f"inner archive not opened: nested deeper than {MAX_ARCHIVE_DEPTH} archives")
            return
        if not on_disk and (size > INNER_ZIP_LIMIT or self._spooled + size > INNER_ZIP_BUDGET):
            yield Skipped(path, f"inner archive not opened: {size:,} bytes, over the inner-archive budget")
            return
        try:
            if on_disk:
                fh: IO[bytes] = opener()
            else:
                fh = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="exhunt-inner-")  # noqa: SIM115 (closed with the collection)
                self._spooled += size
                with opener() as src:
                    while chunk := src.read(8 << 20):
                        fh.write(chunk)
                fh.seek(0)
            self._closing.append(fh)
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            yield Skipped(path, f"inner archive not opened: not a readable zip ({_why(exc)})")
            return
        self._closing.append(archive)
        yield from self._zip_entries(archive, path + "/", depth)  # type: ignore[misc]


class FolderCollection(Collection):
    """A directory tree on disk. Symbolic links are listed, never followed."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root
        self.root = str(root)
        self.name = escaped_name(root.name or str(root))
        self._real: dict[str, str] = {}  # shown path -> real relative path, where they differ
        self._mounts = _pseudo_mounts()

    def _scan(self) -> Iterator[Entry | Skipped]:
        try:
            root_dev = os.stat(self._root).st_dev
        except OSError as exc:
            yield Skipped(".", f"folder not read: {_why(exc)}")
            return
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            shown_dir = self._shown(rel_dir) if rel_dir else ""
            try:
                with os.scandir(os.path.join(self._root, rel_dir) if rel_dir else self._root) as it:
                    children = sorted(it, key=lambda d: d.name)
            except OSError as exc:
                yield Skipped((shown_dir or ".") + "/", f"folder not read: {_why(exc)}")
                continue
            subdirs: list[str] = []
            for child in children:
                rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
                shown = self._shown(rel)
                try:
                    st = child.stat(follow_symlinks=False)
                except OSError as exc:
                    yield Skipped(shown, f"cannot stat: {_why(exc)}")
                    continue
                mode = st.st_mode
                if stat.S_ISLNK(mode):
                    yield Skipped(shown, f"symbolic link not followed (-> {_link_target(child.path)})")
                elif stat.S_ISDIR(mode):
                    fstype = self._mounts.get(os.path.realpath(child.path)) if st.st_dev != root_dev else None
                    if fstype:
                        yield Skipped(shown + "/", f"folder not read: a {fstype} pseudo file system")
                    else:
                        subdirs.append(rel)
                elif not stat.S_ISREG(mode):
                    yield Skipped(shown, f"{_kind(mode)}: not opened")
                elif not os.access(child.path, os.R_OK):
                    yield Skipped(shown, "file not read: permission denied")
                else:
                    path = self._unique(shown)
                    if path != rel:
                        self._real[path] = rel
                    mtime = datetime.fromtimestamp(st.st_mtime, UTC)
                    yield Entry(path, st.st_size, mtime, None if path == shown else shown)
                    if is_zip_name(child.name):
                        full = child.path
                        yield from self._inner_zip(path, 1, lambda full=full: open_readonly(full), 0, on_disk=True)
            stack.extend(reversed(subdirs))

    def _shown(self, rel: str) -> str:
        return escaped_name(rel)

    def local_path(self, path: str) -> str | None:
        return None if path in self._members else os.path.join(self.root, self._real.get(path, path))

    def open(self, path: str) -> BinaryIO:
        if path in self._members:
            return super().open(path)
        return open_readonly(os.path.join(self.root, self._real.get(path, path)))  # not pathlib: ~7 us a file


class ZipCollection(Collection):
    """A zip archive read in place; members are streamed, never extracted."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            fh = open_readonly(path)
        except OSError as exc:
            raise InputError(f"cannot read zip {path}: {_why(exc)}") from None
        try:
            self._zip = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            fh.close()
            raise InputError(f"cannot read zip {path}: {_why(exc)}") from None
        self._closing.extend([fh, self._zip])
        self.root = str(path)
        self.name = escaped_name(path.stem)

    def _scan(self) -> Iterator[Entry | Skipped]:
        yield from self._zip_entries(self._zip, "", 0)


class SingleFileCollection(Collection):
    """One loose log file given directly on the command line."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self.root = str(path.parent)
        self.name = escaped_name(path.name)

    def _scan(self) -> Iterator[Entry | Skipped]:
        st = self._path.stat()
        yield Entry(self.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def local_path(self, path: str) -> str | None:
        return str(self._path)

    def open(self, path: str) -> BinaryIO:
        return open_readonly(self._path)


def open_collection(path: Path) -> Collection:
    """Open a folder, zip or file; raise InputError (exit 2, one line) if it cannot or must not be
    read: missing, not readable, a FIFO or device, a pseudo file system, or `/` itself."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"no such file or folder: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_why(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        real = os.path.realpath(path)
        if real == os.path.realpath(os.sep) or os.path.dirname(real) == real:
            raise InputError(f"refusing to scan {path}: the root of this machine's file system, not a collection")
        fstype = _fstype_of(real)
        if fstype in PSEUDO_FILESYSTEMS:
            raise InputError(f"refusing to scan {path}: a {fstype} pseudo file system (a live view, not evidence)")
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"folder is not readable: {path}")
        from exhunt import images  # disk images and mounted volumes: exhunt/images/

        if images.looks_like_mounted_volume(path):
            return images.open_mounted_collection(path)
        return FolderCollection(path)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"refusing to scan {path}: a {_kind(st.st_mode)}, not a file or folder")
    fstype = _fstype_of(os.path.realpath(path))
    if fstype in PSEUDO_FILESYSTEMS:
        raise InputError(f"refusing to scan {path}: a file of a {fstype} pseudo file system")
    if not os.access(path, os.R_OK):
        raise InputError(f"file is not readable: {path}")
    try:
        with open_readonly(path) as fh:
            is_zip = zipfile.is_zipfile(fh)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_why(exc)}") from None
    if is_zip:
        return ZipCollection(path)
    if path.suffix.lower() == ".zip":
        raise InputError(f"cannot read zip {path}: not a valid zip archive")
    from exhunt import images

    if images.looks_like_image(path):
        return images.open_image_collection(path)
    return SingleFileCollection(path)


# -- zip members ---------------------------------------------------------------------------------
def _open_member(member: _Member, path: str) -> BinaryIO:
    try:
        stream = member.archive.open(member.info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise OSError(f"zip member {path} not readable: {_why(exc)}") from None
    return _BoundedMember(stream, member.cap, path)  # type: ignore[return-value]


class _BoundedMember:
    """A zip member's stream, read up to `cap` bytes; damage (data ending early, bad CRC, bad
    compressed data) becomes one OSError that names the member and the offset."""

    def __init__(self, stream: Any, cap: int, path: str) -> None:
        self.stream, self.left, self.path, self.offset = stream, cap, path, 0

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n is None or n < 0 else min(n, self.left)
        try:
            data = self.stream.read(want)
        except (EOFError, zlib.error, zipfile.BadZipFile, ValueError, OSError, IndexError, RuntimeError) as exc:
            raise OSError(f"zip member damaged at byte {self.offset:,}: {_why(exc)}") from None
        self.left -= len(data)
        self.offset += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(getattr(self.stream, "seekable", lambda: False)())

    def tell(self) -> int:
        return self.offset

    def seek(self, pos: int, whence: int = 0) -> int:
        """Absolute seeks within the member (evidence goes straight to a line's run); the cap holds."""
        if whence != 0 or pos < 0:
            raise OSError("zip members are sought from their start only")
        try:
            self.stream.seek(pos)
        except (EOFError, zlib.error, zipfile.BadZipFile, ValueError, OSError, RuntimeError) as exc:
            raise OSError(f"zip member damaged before byte {pos:,}: {_why(exc)}") from None
        self.left += self.offset - pos
        self.offset = pos
        return pos

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> _BoundedMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers -------------------------------------------------------------------------------------
def _safe_member_name(name: str) -> str | None:
    """Return a normalised relative name, or None if it would escape the collection."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def is_zip_name(name: str) -> bool:
    """A file the inventory opens as an inner zip (by its name, as folders and zips do)."""
    return name.lower().endswith(".zip")


def _why(exc: BaseException) -> str:
    text = (getattr(exc, "strerror", None) if isinstance(exc, OSError) else None) or str(exc)
    text = text.splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _link_target(path: str) -> str:
    try:
        return escaped_name(os.readlink(path))[:200]
    except OSError:
        return "?"


def _mount_table() -> list[tuple[str, str]]:
    """(mount point, file system type) of this machine, longest mount point first ([] off Linux)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            rows = [line.split() for line in fh]
    except OSError:
        return []
    table = [(r[1].replace("\\040", " "), r[2]) for r in rows if len(r) >= 3]
    return sorted(table, key=lambda r: -len(r[0]))


def _pseudo_mounts() -> dict[str, str]:
    return {mp: fs for mp, fs in _mount_table() if fs in PSEUDO_FILESYSTEMS}


def _fstype_of(real: str) -> str | None:
    for mount_point, fstype in _mount_table():
        if real == mount_point or real.startswith(mount_point.rstrip("/") + "/"):
            return fstype
    return None
