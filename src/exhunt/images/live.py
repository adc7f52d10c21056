"""The live system (`exhunt scan --live`, `exhunt collect --live`) behind one small interface.

A `LiveSystem` gives the server's fixed volumes, what its registry says, and a way to export the
event logs (their live files are held open by the EventLog service). `WindowsLiveSystem` does it
with OS calls: files opened share-read (with FILE_SHARE_WRITE and FILE_SHARE_DELETE, so Exchange
and IIS go on writing; what is read is the prefix present at listing time), `winreg` for the
registry and `wevtutil epl` to export each event log to a work folder. `FolderLiveSystem` plays a
server from a folder laid out like its C: drive, so all of this runs in tests on any OS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from exhunt.errors import InputError
from exhunt.images.discovery import DEFAULT_EVENT_LOGS
from exhunt.images.fs import DirectoryFilesystem, Node
from exhunt.images.registry import SETUP_KEY, RegistryFacts, setup_facts

EVENT_LOG_DIR = DEFAULT_EVENT_LOGS[3:].lower()  # windows\system32\winevt\logs


class LiveSystem(Protocol):
    hostname: str

    def volumes(self) -> dict[str, Path]:
        """Drive letter -> the folder where that volume is seen (C -> C:\\ on Windows)."""
        ...

    def registry(self) -> RegistryFacts: ...

    def export_event_logs(self, log_files: list[str], dest: Path) -> tuple[dict[str, Path], list[str]]:
        """Export the event logs named by their file names into `dest`: (file name -> copy, notes)."""
        ...

    def open_shared(self, path: str) -> BinaryIO: ...


class LiveVolume(DirectoryFilesystem):
    """A live volume: event logs come from their exports, files are opened share-read."""

    def __init__(self, root: Path, label: str, system: LiveSystem, work: Path, notes: list[str]) -> None:
        super().__init__(root, label)
        self._system, self._work, self._notes = system, work, notes
        self._exports: dict[str, Path] | None = None

    def children(self, node: Node) -> list[Node]:
        kids = super().children(node)
        rel = os.path.relpath(node.ref, self._root).replace(os.sep, "\\").lower()
        if rel != EVENT_LOG_DIR:
            return kids
        if self._exports is None:
            names = [k.name for k in kids if not k.is_dir and k.name.lower().endswith(".evtx")]
            self._exports, notes = self._system.export_event_logs(names, self._work)
            self._notes.extend(notes)
        out = [
            k for k in kids if k.is_dir or not k.name.lower().endswith(".evtx")
        ]  # other exports there: read as they are
        for name, copy in sorted(self._exports.items()):
            st = copy.stat()
            original = next((k for k in kids if k.name == name), None)
            out.append(Node(name, False, st.st_size, original.mtime if original else None, str(copy)))
        return out

    def open(self, node: Node) -> BinaryIO:
        return self._system.open_shared(node.ref)


def open_live_collection(system: LiveSystem, work: Path | None = None) -> Any:
    """The live server's evidence set as a collection; event log exports go to `work` (a temp folder if None)."""
    from exhunt.images.collection import VolumeCollection

    own = work is None
    work = Path(tempfile.mkdtemp(prefix="exhunt-live-")) if work is None else work
    work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = [
        "live system: files are read share-read; a log still being written is read up to its size when listed"
    ]
    volumes = {d: LiveVolume(p, f"live volume {d}:", system, work, notes) for d, p in system.volumes().items()}

    def cleanup() -> None:
        if own:
            shutil.rmtree(work, ignore_errors=True)

    collection = VolumeCollection(
        volumes, name=system.hostname, root=f"live:{system.hostname}", source=f"live system {system.hostname}",
        facts=system.registry, on_close=cleanup,
    )  # fmt: skip
    collection.listing()  # exports happen during the walk: their notes join the collection's
    collection.notes.extend(notes)
    return collection


class FolderLiveSystem:
    """A live server played from a folder laid out like its C: drive (for tests on any OS)."""

    def __init__(self, c_drive: Path, hostname: str, facts: RegistryFacts | None = None) -> None:
        self._c, self.hostname, self._facts = c_drive, hostname, facts or RegistryFacts()
        self.exported: list[str] = []

    def volumes(self) -> dict[str, Path]:
        return {"C": self._c}

    def registry(self) -> RegistryFacts:
        return self._facts

    def export_event_logs(self, log_files: list[str], dest: Path) -> tuple[dict[str, Path], list[str]]:
        out = {}
        for name in log_files:
            src = self._c / "Windows" / "System32" / "winevt" / "Logs" / name
            shutil.copyfile(src, dest / name)  # what `wevtutil epl` does on Windows
            out[name] = dest / name
            self.exported.append(name)
        return out, []

    def open_shared(self, path: str) -> BinaryIO:
        return open(path, "rb")


class WindowsLiveSystem:
    """The Windows server this runs on. Needs an elevated prompt (Administrator) to read every log."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise InputError(
                "--live reads the Windows server exhunt runs on; on this system scan an image or a collection"
            )
        import socket

        self.hostname = os.environ.get("COMPUTERNAME") or socket.gethostname()

    def volumes(self) -> dict[str, Path]:
        import ctypes

        mask = ctypes.windll.kernel32.GetLogicalDrives()  # type: ignore[attr-defined]
        out = {}
        for i in range(26):
            letter = chr(ord("A") + i)
            if mask & (1 << i) and ctypes.windll.kernel32.GetDriveTypeW(f"{letter}:\\") == 3:  # type: ignore[attr-defined]
                out[letter] = Path(f"{letter}:\\")
        return out

    def registry(self) -> RegistryFacts:
        import winreg  # type: ignore[import-not-found]

        facts = RegistryFacts(computer_name=self.hostname)
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, f"SOFTWARE\\{SETUP_KEY}") as key:
                values = {}
                for name in ("MsiInstallPath", "MsiProductMajor", "MsiProductMinor", "MsiBuildMajor", "MsiBuildMinor"):
                    try:
                        values[name] = winreg.QueryValueEx(key, name)[0]
                    except OSError:
                        continue
                facts.install_path, facts.build = setup_facts(values)
        except OSError as exc:
            facts.notes.append(f"HKLM\\SOFTWARE\\{SETUP_KEY} not readable ({exc}): default install path used")
        for channel in ("Application", "Security", "System"):
            try:
                path = f"SYSTEM\\CurrentControlSet\\Services\\EventLog\\{channel}"
                with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as key:
                    facts.event_log_files.append(winreg.QueryValueEx(key, "File")[0])
            except OSError:
                continue
        return facts

    def export_event_logs(self, log_files: list[str], dest: Path) -> tuple[dict[str, Path], list[str]]:
        out, notes = {}, []
        for name in log_files:
            channel = name[: -len(".evtx")].replace("%4", "/")
            target = dest / name
            done = subprocess.run(
                ["wevtutil", "epl", channel, str(target), "/ow:true"], capture_output=True, text=True, check=False
            )
            if done.returncode == 0 and target.exists():
                out[name] = target
            else:
                notes.append(f"event log {channel} not exported: {(done.stderr or done.stdout).strip()[:200]}")
        return out, notes

    def open_shared(self, path: str) -> BinaryIO:
        import ctypes
        import msvcrt  # type: ignore[import-not-found]

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        kernel32.CreateFileW.restype = ctypes.c_void_p
        generic_read, share_all, open_existing, backup_semantics = 0x80000000, 0x7, 3, 0x02000000
        handle = kernel32.CreateFileW(str(path), generic_read, share_all, None, open_existing, backup_semantics, None)
        if handle in (None, ctypes.c_void_p(-1).value):
            raise ctypes.WinError()  # type: ignore[attr-defined]
        fd = msvcrt.open_osfhandle(handle, os.O_RDONLY | os.O_BINARY)  # type: ignore[attr-defined]
        return os.fdopen(fd, "rb")
