"""Build small NTFS disk images from a synthetic collection with Debian's ntfs-3g, qemu-img and sfdisk.

`reference_tree` lays a synthetic server out as its disk would hold it (event logs under
winevt\\Logs); `ntfs_volume` formats a volume with mkntfs and fills it through the ntfs-3g FUSE
mount; the disk helpers wrap that volume in a GPT disk, VHDX, VHD or VMDK.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

TOOLS = ("mkntfs", "ntfs-3g", "qemu-img", "sfdisk")
MIB = 1 << 20


def missing_tools() -> str | None:
    """Why images cannot be built here (a missing tool, no FUSE), or None."""
    for tool in TOOLS:
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists() and not Path("/sbin", tool).exists():
            return f"{tool} not installed (Debian ntfs-3g, qemu-utils, fdisk: make test installs them)"
    if not os.path.exists("/dev/fuse"):
        return "FUSE is unavailable here (/dev/fuse missing): cannot fill an NTFS image with ntfs-3g"
    if os.geteuid() != 0:
        return "mounting an NTFS image with ntfs-3g needs root here"
    return None


def _tool(name: str) -> str:
    for folder in ("", "/usr/sbin/", "/sbin/"):
        path = shutil.which(name) if not folder else folder + name
        if path and os.path.exists(path):
            return path
    return name


def run(*args: str) -> None:
    subprocess.run([_tool(args[0]), *args[1:]], check=True, capture_output=True)


def reference_tree(synth_root: Path, out: Path) -> Path:
    """Copy HOST/C/... from a synthetic collection into out/HOST, event exports moved to winevt\\Logs."""
    host = next(p for p in sorted(synth_root.iterdir()) if (p / "C" / "Program Files").is_dir())  # the Exchange server
    dest = out / host.name
    shutil.copytree(host / "C", dest / "C")
    events = host / "EventLogs"
    if events.is_dir():
        logs = dest / "C" / "Windows" / "System32" / "winevt" / "Logs"
        logs.mkdir(parents=True)
        for f in sorted(events.iterdir()):
            shutil.copy2(f, logs / f.name)
    return dest


def ntfs_volume(c_tree: Path | None, image: Path, size_mb: int, extra: Callable[[Path], None] | None = None) -> Path:
    """An NTFS volume file holding the tree (a drive's contents), filled through an ntfs-3g mount."""
    with open(image, "wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkntfs", "-F", "-Q", "-q", "-L", "EXCH", str(image))
    mount = Path(tempfile.mkdtemp(prefix="exhunt-ntfs-"))
    try:
        run("ntfs-3g", "-o", "big_writes", str(image), str(mount))
        try:
            if c_tree is not None:
                subprocess.run(["cp", "-a", f"{c_tree}/.", str(mount)], check=True, capture_output=True)
            if extra is not None:
                extra(mount)
        finally:
            run("umount", str(mount))
    finally:
        mount.rmdir()
    return image


def gpt_disk(volume: Path, disk: Path) -> Path:
    """A raw disk: GPT with a 1 MiB EFI-type partition (empty) and the NTFS volume as basic data."""
    vol_size = volume.stat().st_size
    total = 4 * MIB + vol_size + MIB
    with open(disk, "wb") as fh:
        fh.truncate(total)
    layout = (
        "label: gpt\n"
        "start=2048, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        f"start=8192, size={vol_size // 512}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n"
    )
    subprocess.run([_tool("sfdisk"), "-q", str(disk)], input=layout.encode(), check=True, capture_output=True)
    with open(volume, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(8192 * 512)
        shutil.copyfileobj(src, dst, 4 * MIB)
    return disk


def mbr_disk(volume: Path, disk: Path) -> Path:
    """A raw disk with an MBR: the NTFS volume as partition 1 (type 0x07) at 1 MiB."""
    vol_size = volume.stat().st_size
    with open(disk, "wb") as fh:
        fh.truncate(2 * MIB + vol_size)
    layout = f"label: dos\nstart=2048, size={vol_size // 512}, type=7\n"
    subprocess.run([_tool("sfdisk"), "-q", str(disk)], input=layout.encode(), check=True, capture_output=True)
    with open(volume, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(2048 * 512)
        shutil.copyfileobj(src, dst, 4 * MIB)
    return disk


def convert(raw: Path, out: Path, fmt: str) -> Path:
    """qemu-img convert a raw disk to vhdx, vpc (VHD) or vmdk."""
    run("qemu-img", "convert", "-f", "raw", "-O", fmt, str(raw), str(out))
    return out
