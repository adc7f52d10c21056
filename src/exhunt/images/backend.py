"""Disk containers, partitions and NTFS through the libyal Python bindings (the `images` extra).

libvmdk, libvhdi and libewf open the containers, libvsgpt reads GPT partition tables (an MBR's
four primary entries are read here: 16 bytes each), libfsntfs reads NTFS with `$STANDARD_INFORMATION`,
`$FILE_NAME`, alternate data streams and unallocated MFT records. Everything is opened read-only;
every failure is an `InputError` with one line naming the image and the reason.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyewf
import pyfsntfs
import pyvhdi
import pyvmdk
import pyvsgpt

from exhunt.errors import InputError
from exhunt.images.fs import Node, resolve

_MBR_NTFS_TYPES = {0x07, 0x17, 0x27}
_MBR_EXTENDED = {0x05, 0x0F, 0x85}
_GPT_BASIC_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
_MFT_REF = 0x0000FFFFFFFFFFFF
_REPARSE_POINT = 0x400


class _Slice:
    """A window of a file-like object: what libfsntfs reads a partition through."""

    def __init__(self, base: Any, offset: int, size: int) -> None:
        self._base, self._offset, self._size, self._pos = base, offset, size, 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or self._pos + size > self._size:
            size = max(0, self._size - self._pos)
        self._base.seek(self._offset + self._pos)
        data = self._base.read(size)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def get_size(self) -> int:
        return self._size


@dataclass
class Disk:
    """An opened image: its NTFS volumes by drive letter, what was found, and handles to close."""

    path: Path
    kind: str
    size: int
    volumes: dict[str, NtfsFilesystem]
    found: list[str]
    handles: list[Any] = field(default_factory=list)

    def describe(self) -> str:
        read = ", ".join(f"{letter}: = {fs.label}" for letter, fs in self.volumes.items())
        return f"{self.kind} image {self.path.name} ({self.size:,} bytes); volumes read: {read}; found: {'; '.join(self.found)}"

    def close(self) -> None:
        for h in reversed(self.handles):
            with contextlib.suppress(Exception):  # closing a half-opened handle: nothing to recover
                h.close()


def open_image(path: Path) -> Disk:
    """Open a container, find its NTFS volumes and name them C:, D:, ... (C: is the one holding Windows)."""
    handles: list[Any] = []
    try:
        kind, media = _open_container(path, handles)
        size = media.get_size()
        found, candidates = _partitions(media, size, handles)
        volumes: list[NtfsFilesystem] = []
        lock = threading.RLock()  # one disk handle under every volume: one reader at a time
        for label, stream in candidates:
            try:
                volumes.append(NtfsFilesystem(stream, label, handles, lock))
            except OSError as exc:
                found.append(f"{label}: not a readable NTFS volume ({_first_line(exc)})")
        if not volumes:
            raise InputError(
                f"{path}: no NTFS volume found in this {kind} image ({'; '.join(found) or 'no partitions'})"
            )
        windows = [v for v in volumes if resolve(v, "Windows\\System32") is not None]
        ordered = windows[:1] + [v for v in volumes if v not in windows[:1]]
        letters = dict(zip("CDEFGHIJKLMNOPQRSTUVWXYZ", ordered, strict=False))
        return Disk(path, kind, size, letters, found, handles)
    except InputError:
        _close_all(handles)
        raise
    except (OSError, ValueError, MemoryError) as exc:
        _close_all(handles)
        raise InputError(f"{path}: cannot read disk image: {_first_line(exc)}") from None


def _close_all(handles: list[Any]) -> None:
    Disk(Path("."), "", 0, {}, [], handles).close()


def _first_line(exc: BaseException) -> str:
    """A libyal error chain ("fn: what. fn2: why. ...") as its two outermost clauses, without function names."""
    clauses = [re.sub(r"^[a-z0-9_]+: ", "", c.strip()) for c in str(exc).replace("\n", " ").split(". ")]
    text = "; ".join(c for c in clauses[:2] if c).rstrip(".")
    return (text[:240] + "…") if len(text) > 240 else text or type(exc).__name__


class _Media:
    """A libyal handle seen as a file object with get_size()."""

    def __init__(self, handle: Any, size: int) -> None:
        self._h, self._size = handle, size

    def read(self, size: int = -1) -> bytes:
        return self._h.read(size if size >= 0 else self._size)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._h.seek(offset, whence)
        return self._h.tell()

    def tell(self) -> int:
        return self._h.tell()

    def get_size(self) -> int:
        return self._size


def _open_container(path: Path, handles: list[Any]) -> tuple[str, Any]:
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith((b"KDMV", b"# Disk DescriptorFile")):
        h = pyvmdk.handle()
        handles.append(h)
        h.open(str(path))
        if head.startswith(b"KDMV"):
            # one sparse extent holding its own descriptor: its data is this very file, whatever
            # file name the embedded descriptor gives (a renamed copy would otherwise read the original)
            check_sparse_extent(path)
            extent = open(path, "rb")  # noqa: SIM115 - closed with the image
            handles.append(extent)
            h.open_extent_data_files_as_file_objects([extent])
        else:
            h.open_extent_data_files()
        return "VMDK", _Media(h, h.get_media_size())
    if head.startswith(b"vhdxfile") or _vhd_footer(path):
        h = pyvhdi.file()
        handles.append(h)
        h.open(str(path))
        if h.get_disk_type() == 4:  # differencing: its data lives partly in the parent image
            raise InputError(
                f"{path}: a differencing (snapshot) disk: merge it with its parent first (qemu-img convert)"
            )
        return ("VHDX" if head.startswith(b"vhdxfile") else "VHD"), _Media(h, h.get_media_size())
    if head.startswith(b"EVF\x09\x0d\x0a\xff\x00"):
        segments = pyewf.glob(str(path))
        h = pyewf.handle()
        handles.append(h)
        h.open(segments)
        media = _Media(h, h.get_media_size())
        try:  # the last chunk lives in the last segment: a missing or short segment fails here
            media.seek(media.get_size() - 512)
            complete = len(media.read(512)) == 512
        except OSError:
            complete = False
        if not complete:
            raise InputError(
                f"{path}: E01 set incomplete: a segment file is missing or short "
                f"({len(segments)} consecutive segment file(s) found; the image needs more)"
            )
        try:  # the acquisition hash the examiner recorded, so the report names the image it read
            hashes = ", ".join(f"{k} {v}" for k, v in sorted((h.get_hash_values() or {}).items()))
        except OSError:
            hashes = ""
        return f"E01 ({len(segments)} segment(s){'; acquisition ' + hashes if hashes else ''})", media
    expected = {".vmdk": "VMDK", ".vhdx": "VHDX", ".vhd": "VHD", ".e01": "E01"}.get(path.suffix.lower())
    if expected:
        raise InputError(f"{path}: not a {expected} image (its signature is missing): damaged or not a disk image")
    fh = open(path, "rb")  # noqa: SIM115 - kept open for the image's lifetime, closed by Disk.close
    handles.append(fh)
    fh.seek(0, 2)
    return "raw", _Slice(fh, 0, fh.tell())


_SPARSE_HEADER = struct.Struct("<4sIIQQQQIQQQ")
_GD_AT_END = 0xFFFFFFFFFFFFFFFF


def check_sparse_extent(path: Path) -> None:
    """Refuse a VMDK sparse extent whose grain tables point past the end of the file (a truncated copy)."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(0)
        header = fh.read(_SPARSE_HEADER.size)
        if len(header) < _SPARSE_HEADER.size:
            raise InputError(f"{path}: truncated VMDK: the header is incomplete")
        _, _, _, capacity, grain, _, _, per_table, _, gd_offset, _ = _SPARSE_HEADER.unpack(header)
        if gd_offset == _GD_AT_END:  # streamOptimized: the footer copy of the header ends the file
            fh.seek(max(0, size - 1024))
            if fh.read(4) != b"KDMV":
                raise InputError(f"{path}: truncated VMDK: the stream-optimized footer is missing")
            return
        if not grain or not per_table or gd_offset * 512 >= size:
            raise InputError(f"{path}: truncated or damaged VMDK: the grain directory lies past the end of the file")
        tables = -(-capacity // (grain * per_table))
        fh.seek(gd_offset * 512)
        directory = fh.read(4 * tables)
        if len(directory) < 4 * tables:
            raise InputError(f"{path}: truncated VMDK: the grain directory is cut short")
        last = 0
        for (table,) in struct.iter_unpack("<I", directory):
            if not table:
                continue
            fh.seek(table * 512)
            entries = fh.read(4 * per_table)
            if len(entries) < 4 * per_table:
                raise InputError(f"{path}: truncated VMDK: a grain table lies past the end of the file")
            last = max(last, max(struct.unpack(f"<{per_table}I", entries)))
        if last and (last + grain) * 512 > size:
            missing = (last + grain) * 512 - size
            raise InputError(
                f"{path}: truncated VMDK: {missing:,} bytes of grain data are missing from the end of the file"
            )


def _vhd_footer(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() < 512:
            return False
        fh.seek(-512, 2)
        return fh.read(8) == b"conectix"


def _partitions(media: Any, size: int, handles: list[Any]) -> tuple[list[str], list[tuple[str, Any]]]:
    """Describe every partition found and return the NTFS candidates (label, stream)."""
    media.seek(0)
    head = media.read(1024)
    if head[3:11] == b"NTFS    ":
        return ["whole disk: NTFS"], [("whole disk (NTFS)", _Slice(media, 0, size))]
    if head[512:520] == b"EFI PART":
        vs = pyvsgpt.volume()
        handles.append(vs)
        vs.open_file_object(media)
        found, candidates = [], []
        for i, part in enumerate(vs.partitions, 1):
            stream = _Slice(media, part.volume_offset, part.size)
            stream.seek(0)
            boot = stream.read(16)
            what = "NTFS" if boot[3:11] == b"NTFS    " else f"type {part.type_identifier}"
            label = f"GPT partition {i} ({what}, {part.size:,} bytes at offset {part.volume_offset:,})"
            found.append(label)
            if boot[3:11] == b"NTFS    ":
                candidates.append((label, stream))
        return found, candidates
    if head[510:512] == b"\x55\xaa":
        found, candidates = [], []
        for i in range(4):
            entry = head[446 + 16 * i : 462 + 16 * i]
            ptype = entry[4]
            first, count = struct.unpack("<II", entry[8:16])
            if ptype == 0 or count == 0:
                continue
            stream = _Slice(media, first * 512, count * 512)
            boot = stream.read(16)
            is_ntfs = boot[3:11] == b"NTFS    "
            note = " (extended partitions are not read)" if ptype in _MBR_EXTENDED else ""
            label = (
                f"MBR partition {i + 1} (type 0x{ptype:02x}{', NTFS' if is_ntfs else ''}, {count * 512:,} bytes){note}"
            )
            found.append(label)
            if is_ntfs:
                candidates.append((label, stream))
        return found, candidates
    return ["no partition table and no file system signature"], []


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC)
    except (AttributeError, ValueError):
        return None


def _ticks(getter: Any) -> int | None:
    """A FILETIME (100 ns ticks since 1601) as an integer, or None when unreadable."""
    try:
        value = getter()
    except (OSError, ValueError, TypeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


@dataclass(frozen=True)
class MftTimes:
    """The four times of a `$STANDARD_INFORMATION` or `$FILE_NAME` attribute, as FILETIME ticks."""

    created: int | None
    modified: int | None
    changed: int | None
    accessed: int | None


@dataclass(frozen=True)
class MftRecord:
    """What the MFT says about one file: both time sets, the parent record, streams, allocation."""

    record: int
    parent: int | None
    name: str | None
    size: int
    allocated: bool
    si: MftTimes | None
    fn: MftTimes | None
    streams: tuple[str, ...]


class NtfsFilesystem:
    """One NTFS volume read by libfsntfs. Reads are serialised: one volume handle, many reader threads."""

    def __init__(self, stream: Any, label: str, handles: list[Any], lock: threading.RLock | None = None) -> None:
        self.label = label
        self._lock = lock or threading.RLock()
        self._vol = pyfsntfs.volume()
        self._vol.open_file_object(stream)
        self.size = stream.get_size()
        handles.append(self._vol)

    def root(self) -> Node:
        with self._lock:
            entry = self._vol.get_root_directory()
            return Node("", True, 0, None, entry.file_reference & _MFT_REF)

    def children(self, node: Node) -> list[Node]:
        out: dict[int, Node] = {}
        with self._lock:
            try:
                folder = self._vol.get_file_entry(node.ref)
                kids = list(folder.sub_file_entries)
            except OSError:
                return []
            for index, kid in enumerate(kids):
                name = None
                try:
                    ref = (kid.file_reference or 0) & _MFT_REF
                    name = kid.name
                    if name is None or ref in out or (node.name == "" and name.startswith("$")):
                        continue
                    mtime = _time(kid.get_modification_time())
                    if (kid.get_file_attribute_flags() or 0) & _REPARSE_POINT:
                        out[ref] = Node(
                            name, False, 0, mtime, ref, skip="reparse point (link or junction) not followed"
                        )
                        continue
                    is_dir = bool(kid.has_directory_entries_index())
                    size = 0 if is_dir else int(kid.get_size() or 0)
                    if size > self.size:  # a damaged record (or a sparse file larger than its disk)
                        out[ref] = Node(name, False, 0, mtime, ref, skip=f"size {size:,} exceeds the volume: not read")
                        continue
                    out[ref] = Node(name, is_dir, size, mtime, ref)
                except (OSError, TypeError, ValueError, OverflowError) as exc:  # a damaged entry: listed, not read
                    label = name if isinstance(name, str) else f"(entry {index})"
                    out[-1 - index] = Node(label, False, 0, None, None, skip=f"damaged MFT entry: {_first_line(exc)}")
        return list(out.values())

    def open(self, node: Node) -> BinaryIO:
        with self._lock:
            entry = self._vol.get_file_entry(node.ref)
            size = entry.get_size()
        return io.BufferedReader(_EntryStream(entry, size, self._lock), buffer_size=1 << 20)  # type: ignore[return-value]

    def open_stream(self, node: Node, stream_name: str) -> BinaryIO:
        with self._lock:
            ads = self._vol.get_file_entry(node.ref).get_alternate_data_stream_by_name(stream_name)
            size = ads.get_size()
        return io.BufferedReader(_EntryStream(ads, size, self._lock), buffer_size=1 << 16)  # type: ignore[return-value]

    @property
    def record_count(self) -> int:
        with self._lock:
            return self._vol.number_of_file_entries

    def unallocated_records(self) -> Iterator[int]:
        """Numbers of MFT records marked not in use that still hold a file record ("FILE", flags bit 0 clear).

        Read from `$MFT` itself in 1 MiB steps: a server's MFT of 500,000 records is read in seconds
        and only the unallocated ones are parsed."""
        with self._lock:
            mft = self._vol.get_file_entry(0)
            size, step = mft.get_size(), self._vol.get_mft_entry_size()
        chunk = (1 << 20) // step * step
        for offset in range(0, size, chunk):
            with self._lock:
                data = mft.read_buffer_at_offset(min(chunk, size - offset), offset)
            for pos in range(0, len(data) - step + 1, step):
                if data[pos : pos + 4] == b"FILE" and not data[pos + 22] & 1:
                    yield (offset + pos) // step

    def record(self, number: int) -> MftRecord | None:
        """The MFT record `number`, allocated or not; None when it holds no file."""
        with self._lock:
            try:
                entry = self._vol.get_file_entry(number)
                allocated = entry.is_allocated()
                si = fn = None
                name = None
                parent = None
                for attr in entry.attributes:
                    kind = attr.attribute_type
                    if kind == 0x10 and si is None:
                        si = _times(attr)
                    elif kind == 0x30 and (fn is None or attr.get_name_space() != 2):  # prefer a non-DOS name
                        fn = _times(attr)
                        name = attr.name
                        parent = (attr.parent_file_reference or 0) & _MFT_REF
                if si is None and fn is None:
                    return None
                streams = tuple(str(s.name) for s in entry.alternate_data_streams) if allocated else ()
                size = int(entry.get_size() or 0) if not entry.has_directory_entries_index() else 0
            except (OSError, TypeError, ValueError, OverflowError):  # a damaged record holds no usable times
                return None
        return MftRecord(number, parent, name, size, allocated, si, fn, streams)


def _times(attr: Any) -> MftTimes:
    return MftTimes(
        _ticks(attr.get_creation_time_as_integer),
        _ticks(attr.get_modification_time_as_integer),
        _ticks(attr.get_entry_modification_time_as_integer),
        _ticks(attr.get_access_time_as_integer),
    )


class _EntryStream(io.RawIOBase):
    """A libfsntfs file entry or data stream as a seekable raw stream (under the volume's lock)."""

    def __init__(self, entry: Any, size: int, lock: threading.RLock) -> None:
        self._entry, self._size, self._lock, self._pos = entry, size, lock, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        with self._lock:
            data = self._entry.read_buffer_at_offset(want, self._pos)
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n
