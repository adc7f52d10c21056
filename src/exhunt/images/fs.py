"""One small file-system interface for NTFS volumes in images, mounted volumes and the live system.

Paths are Windows paths without the drive (`Program Files\\Microsoft\\...`), matched
case-insensitively as Windows does. A `Node` carries an opaque `ref` the file system understands
(an MFT record number, an absolute path) so a file found by a walk is opened without a second lookup.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol


@dataclass(frozen=True)
class Node:
    name: str
    is_dir: bool
    size: int
    mtime: datetime | None
    ref: Any = field(compare=False)
    skip: str = ""  # why this entry is not read (a link, a reparse point), listed as Skipped


class Filesystem(Protocol):
    """What discovery, the collection and `collect` need from a volume."""

    label: str

    def root(self) -> Node: ...

    def children(self, node: Node) -> list[Node]: ...

    def open(self, node: Node) -> BinaryIO: ...


def resolve(fs: Filesystem, win_path: str) -> Node | None:
    """The node at `win_path` (backslashes or slashes, case-insensitive), or None."""
    node = fs.root()
    for part in (p for p in win_path.replace("\\", "/").split("/") if p):
        if not node.is_dir:
            return None
        wanted = part.lower()
        node = next((c for c in _children(fs, node) if c.name.lower() == wanted), None)
        if node is None:
            return None
    return node


def walk(fs: Filesystem, top: Node, max_depth: int | None = None, skipped: bool = False) -> Iterator[tuple[str, Node]]:
    """(relative path with backslashes, node) for every file under `top`, in name order; with
    `skipped`, also the entries not read (their `skip` says why)."""
    stack: list[tuple[str, Node, int]] = [("", top, 0)]
    visited: set[Any] = set()
    while stack:
        prefix, folder, depth = stack.pop()
        if folder.ref in visited:  # a damaged index can name a folder inside itself
            continue
        visited.add(folder.ref)
        kids = sorted(_children(fs, folder), key=lambda n: n.name.lower())
        subdirs = []
        for kid in kids:
            rel = f"{prefix}{kid.name}"
            if kid.skip:
                if skipped:
                    yield rel, kid
                continue
            if kid.is_dir:
                if max_depth is None or depth + 1 < max_depth:
                    subdirs.append((rel + "\\", kid, depth + 1))
            else:
                yield rel, kid
        stack.extend(reversed(subdirs))


def _children(fs: Filesystem, node: Node) -> list[Node]:
    try:
        return fs.children(node)
    except OSError:
        return []


class DirectoryFilesystem:
    """A mounted volume (or a folder laid out like one). Symbolic links are not followed."""

    def __init__(self, root: Path, label: str) -> None:
        self._root = root
        self.label = label

    def root(self) -> Node:
        return Node("", True, 0, None, str(self._root))

    def children(self, node: Node) -> list[Node]:
        out = []
        with os.scandir(node.ref) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    out.append(Node(entry.name, False, 0, None, entry.path, skip="symbolic link not followed"))
                elif stat.S_ISDIR(st.st_mode):
                    out.append(Node(entry.name, True, 0, None, entry.path))
                elif stat.S_ISREG(st.st_mode):
                    mtime = datetime.fromtimestamp(st.st_mtime, UTC)
                    out.append(Node(entry.name, False, st.st_size, mtime, entry.path))
        return out

    def open(self, node: Node) -> BinaryIO:
        return open(node.ref, "rb")
