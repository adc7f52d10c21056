"""A server's volumes (an image's NTFS volumes, a mounted volume, the live system) as a `Collection`.

Only the evidence set found by targeted discovery is listed. Paths look like a triage folder,
`HOST/C/Program Files/Microsoft/Exchange Server/V15/...`, so every reader and rule works unchanged.
What could not be read, and every fallback to a default path, is a `Skipped` whose reason starts
with "coverage note:" (the scan lists them in errors[]); the same notes are in `notes`.

A zip on the volume (a KAPE or Velociraptor collection left in `C:\\root`, a zip of logs in
ProgramData) is opened by the zip reader folder and zip collections use (`exhunt.collection`: the
same budgets, unsafe names, encrypted members, nesting depth), read in place from the volume: its
members are `HOST/C/.../name.zip/member`, so evidence names the image (the collection), the zip and
the member.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from exhunt.collection import Collection, Entry, Skipped, is_zip_name
from exhunt.images.discovery import STAGING, WEB, Discovery, Root, discover
from exhunt.images.fs import Filesystem, Node, resolve, walk
from exhunt.images.registry import RegistryFacts, read_hives

NOTE = "coverage note: "
_BAD_NAME = re.compile(r"[/\x00]")


@dataclass(frozen=True)
class Listed:
    """One file of the evidence set: where it sits in the collection and on the server."""

    path: str  # collection path, HOST/C/...
    drive: str
    win_path: str  # C:\...
    kind: str
    node: Node


class VolumeCollection(Collection):
    """The evidence set of one Windows server, read from its volumes (drive letter -> file system)."""

    def __init__(
        self,
        volumes: dict[str, Filesystem],
        name: str,
        root: str,
        source: str,
        facts: Callable[[], RegistryFacts] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.volumes = volumes
        self.root = root
        self.source = source
        self._on_close = on_close
        if facts is not None:
            registry = facts()
        elif "C" in volumes:
            registry = read_hives(volumes["C"])
        else:
            registry = RegistryFacts(notes=["no C: volume: registry not read"])
        self.discovery: Discovery = discover(volumes, registry)
        self.name = _host_name(self.discovery.computer_name) or name
        self.notes: list[str] = [source, *self.discovery.notes]
        self._listed: list[Listed] | None = None
        self._skipped: list[Skipped] = []
        self._dirs: dict[tuple[str, Any], str] = {}  # (drive, ref) of walked web/staging folders -> collection path
        self._by_path: dict[str, Listed] = {}

    def listing(self) -> list[Listed]:
        """Every file of the evidence set (walked once)."""
        if self._listed is None:
            self._listed = []
            seen: set[tuple[str, Any]] = set()
            for root in self.discovery.roots:
                self._walk_root(root, seen)
        return self._listed

    def _scan(self) -> Iterator[Entry | Skipped]:
        listed = self.listing()
        for note in self.notes[1:]:
            yield Skipped(self.root, NOTE + note)
        yield from self._skipped
        for item in listed:
            yield Entry(item.path, item.node.size, item.node.mtime)
            if is_zip_name(item.path):
                yield from self._inner_zip(item.path, 1, self._opener(item.drive, item.node), 0, on_disk=True)

    def _opener(self, drive: str, node: Node) -> Callable[[], BinaryIO]:
        """The file read in place from its volume (seekable), as the zip reader wants it."""
        return lambda: self.volumes[drive].open(node)

    def open(self, path: str) -> BinaryIO:
        if path in self._members:  # a member of a zip on the volume
            return super().open(path)
        if not self._by_path:
            self.listing()
        item = self._by_path[path]
        return self.volumes[item.drive].open(item.node)

    def close(self) -> None:
        super().close()  # the zips opened on the volume, before the volume itself
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def _walk_root(self, root: Root, seen: set[tuple[str, Any]]) -> None:
        drive, rest = root.win_path[0].upper(), root.win_path[3:]
        fs = self.volumes.get(drive)
        top = resolve(fs, rest) if fs is not None else None
        if fs is None or top is None or not top.is_dir:
            if root.kind not in (STAGING,):
                where = "" if fs is not None else f" (no {drive}: volume in this source)"
                self.notes.append(f"not present: {root.win_path} ({root.why}){where}")
            return
        prefix = f"{self.name}/{drive}/" + "/".join(p for p in rest.split("\\") if p)
        stack: list[tuple[str, str, Node, int]] = [(prefix, root.win_path, top, 0)]
        visited: set[Any] = set()
        while stack:
            cpath, wpath, folder, depth = stack.pop()
            if folder.ref in visited:  # a damaged index can name a folder inside itself
                self._skipped.append(Skipped(cpath, "folder loop in the file system index: not read again"))
                continue
            visited.add(folder.ref)
            if root.kind in (WEB, STAGING):
                self._dirs.setdefault((drive, folder.ref), cpath)
            try:
                kids = sorted(fs.children(folder), key=lambda n: n.name.lower())
            except OSError as exc:
                self._skipped.append(Skipped(cpath, f"folder not readable: {exc}"))
                continue
            subdirs = []
            for kid in kids:
                if _BAD_NAME.search(kid.name):
                    self._skipped.append(Skipped(f"{cpath}/{kid.name!r}", "file name not representable: not read"))
                    continue
                kpath, kwin = f"{cpath}/{kid.name}", f"{wpath}\\{kid.name}"
                if kid.skip:
                    self._skipped.append(Skipped(kpath, kid.skip))
                    continue
                if kid.is_dir:
                    low = kid.name.lower()
                    if depth == 0 and low in root.exclude:
                        continue
                    if root.max_depth is None or depth + 1 < root.max_depth:
                        subdirs.append((kpath, kwin, kid, depth + 1))
                    continue
                if root.names and kid.name.lower() not in root.names:
                    continue
                if (drive, kid.ref) in seen:
                    continue
                seen.add((drive, kid.ref))
                if kpath in self._by_path:
                    self._skipped.append(Skipped(kpath, "a second file of the same name (case differs): not read"))
                    continue
                item = Listed(kpath, drive, kwin, root.kind, kid)
                self._by_path[kpath] = item
                self._listed.append(item)  # type: ignore[union-attr]
            stack.extend(reversed(subdirs))

    def walked_folders(self) -> dict[tuple[str, Any], str]:
        """(drive, folder ref) -> collection path, for the web and staging folders walked."""
        self.listing()
        return self._dirs


def _host_name(name: str | None) -> str | None:
    if not name:
        return None
    clean = re.sub(r"[^A-Za-z0-9._-]", "", name)[:63]
    return clean or None


class ContainerCollection(Collection):
    """A volume that holds collected files rather than Windows (a KAPE or Velociraptor VHDX): every
    file of it, under its own path, as a folder collection would list them."""

    def __init__(
        self,
        volumes: dict[str, Filesystem],
        name: str,
        root: str,
        source: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.volumes, self.name, self.root, self.source = volumes, name, root, source
        self.notes = [source, "no Windows volume in this image: read as a container of collected files (every file)"]
        self._on_close = on_close
        self._files: dict[str, tuple[str, Node]] = {}

    def _scan(self) -> Iterator[Entry | Skipped]:
        yield Skipped(self.root, NOTE + self.notes[1])
        for i, (drive, fs) in enumerate(self.volumes.items()):
            prefix = "" if i == 0 else f"volume-{drive}/"
            for rel, node in walk(fs, fs.root(), skipped=True):
                path = prefix + rel.replace("\\", "/")
                if node.skip:
                    yield Skipped(path, node.skip)
                    continue
                if _BAD_NAME.search(rel) or path in self._files:
                    yield Skipped(path, "file name not representable or repeated: not read")
                    continue
                self._files[path] = (drive, node)
                yield Entry(path, node.size, node.mtime)
                if is_zip_name(path):
                    opener = lambda fs=fs, node=node: fs.open(node)  # noqa: E731
                    yield from self._inner_zip(path, 1, opener, 0, on_disk=True)

    def open(self, path: str) -> BinaryIO:
        if path in self._members:  # a member of a zip in the container
            return super().open(path)
        drive, node = self._files[path]
        return self.volumes[drive].open(node)

    def close(self) -> None:
        super().close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
