"""Disk images, mounted volumes and the live system as collections.

Only the Exchange evidence set is read (see `discovery.py`), never the whole disk. This package's
top level imports nothing optional: the disk-image backend (libyal bindings, the `images` extra) is
imported only when an image is opened, so the core runs and fails cleanly without it.
"""

from __future__ import annotations

import os
from pathlib import Path

from exhunt.errors import InputError

IMAGE_SUFFIXES = frozenset({".vmdk", ".vhdx", ".vhd", ".e01", ".ex01", ".raw", ".dd", ".img"})
_SYSTEM_TOPS = ("Windows", "Program Files", "inetpub", "ProgramData", "Users")
EXTRA_HINT = "reading a disk image needs the optional extra: pip install 'exhunt[images]'"

_MAGICS = (
    (0, b"KDMV"),  # VMDK sparse extent
    (0, b"# Disk DescriptorFile"),  # VMDK descriptor
    (0, b"vhdxfile"),  # VHDX
    (0, b"conectix"),  # VHD dynamic (copy of the footer at the start)
    (0, b"EVF\x09\x0d\x0a\xff\x00"),  # EWF / E01
    (3, b"NTFS    "),  # a bare NTFS volume
    (512, b"EFI PART"),  # a GPT disk
)


def looks_like_image(path: Path) -> bool:
    """True for a file that names or opens like a disk image (by suffix, then by magic)."""
    if path.suffix.lower() in IMAGE_SUFFIXES or path.suffix.lower().startswith(".e0"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(520)
    except OSError:
        return False
    return any(head[off : off + len(magic)] == magic for off, magic in _MAGICS)


def looks_like_mounted_volume(path: Path) -> bool:
    """A directory that is a mount point holding Windows, or whose top holds the registry hives."""
    if not path.is_dir():
        return False
    has_windows = any(p.is_file() for p in _ci_candidates(path, ("Windows", "System32", "config", "SOFTWARE")))
    return has_windows or (os.path.ismount(path) and _ci_child(path, "Windows") is not None)


def open_image_collection(path: Path):  # -> ImageCollection (imported lazily)
    """Open a disk image as a collection; InputError with one clear line on any failure."""
    try:
        from exhunt.images.backend import open_image
    except ImportError as exc:
        raise InputError(f"{path}: {EXTRA_HINT} ({exc.name or exc} is not installed)") from None
    from exhunt.images.collection import ContainerCollection, VolumeCollection
    from exhunt.images.fs import resolve

    disk = open_image(path)
    try:
        if not any(resolve(disk.volumes["C"], top) for top in _SYSTEM_TOPS):  # collected files, not a server's drive
            return ContainerCollection(disk.volumes, _stem(path), str(path), disk.describe(), on_close=disk.close)
        return VolumeCollection(
            disk.volumes, name=_stem(path), root=str(path), source=disk.describe(), on_close=disk.close
        )
    except BaseException:
        disk.close()
        raise


def open_mounted_collection(path: Path):
    """A mounted Windows volume (or a copy of one) read by targeted discovery."""
    from exhunt.images.collection import VolumeCollection
    from exhunt.images.fs import DirectoryFilesystem

    fs = DirectoryFilesystem(path, label=f"mounted volume {path}")
    name = path.resolve().name or "volume"
    if len(name) == 1 or name.endswith(":"):  # a drive letter would read as a drive, not a host, in paths
        name = f"volume-{name.rstrip(':')}"
    return VolumeCollection({"C": fs}, name=name, root=str(path), source=f"mounted volume {path}")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".vmdk", ".vhdx", ".vhd", ".raw", ".dd", ".img"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return path.stem or name


def _ci_child(folder: Path, name: str) -> Path | None:
    try:
        for entry in os.scandir(folder):
            if entry.name.lower() == name.lower():
                return Path(entry.path)
    except OSError:
        return None
    return None


def _ci_candidates(folder: Path, parts: tuple[str, ...]) -> list[Path]:
    current: Path | None = folder
    for part in parts:
        current = _ci_child(current, part) if current is not None else None
    return [current] if current is not None else []
