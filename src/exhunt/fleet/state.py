"""What a fleet run remembers per host: its artifacts' fingerprints (path, size, mtime, head hash).

A host is rescanned when a file is new, gone, or changed. A file whose size and mtime match the last run
counts as unchanged without being read; one whose mtime moved (a copy) but whose size and hash of the
first 64 KB match is unchanged too. `--full` rescans every host whatever its fingerprint says.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HEAD_BYTES = 64 * 1024

Fingerprint = dict[str, list]  # relative path -> [size, mtime_ns, sha256 of the first 64 KB or None]


def head_hash(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) for every file of a host collection (a zip is one file)."""
    root = Path(root)
    if root.is_file():
        st = root.stat()
        return {root.name: (st.st_size, st.st_mtime_ns)}
    out: dict[str, tuple[int, int]] = {}
    for dirpath, _dirs, names in os.walk(root, onerror=None):
        for n in names:
            p = Path(dirpath, n)
            try:
                st = p.stat()
            except OSError:
                continue
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def fingerprint(root: Path, previous: Fingerprint | None = None) -> Fingerprint:
    """Sizes, mtimes and head hashes; a file unchanged in size and mtime keeps its previous hash unread."""
    root = Path(root)
    previous = previous or {}
    out: Fingerprint = {}
    for rel, (size, mtime) in listing(root).items():
        old = previous.get(rel)
        if old and old[0] == size and old[1] == mtime and old[2]:
            out[rel] = [size, mtime, old[2]]
            continue
        try:
            out[rel] = [size, mtime, head_hash(root if root.is_file() else root / rel)]
        except OSError:
            out[rel] = [size, mtime, None]
    return out


def changed_files(root: Path, previous: Fingerprint) -> list[str]:
    """Files new or changed since `previous` (and files gone, prefixed with '-'); [] when nothing changed.
    Reads the head of a file only when its size matches but its mtime does not."""
    now = listing(root)
    changed = [f"-{rel}" for rel in previous if rel not in now]
    for rel, (size, mtime) in now.items():
        old = previous.get(rel)
        if old is None or old[0] != size:
            changed.append(rel)
        elif old[1] != mtime:
            try:
                same = old[2] is not None and head_hash(root if root.is_file() else root / rel) == old[2]
            except OSError:
                same = False
            if not same:
                changed.append(rel)
    return sorted(changed)


def changes_between(previous: Fingerprint, now: Fingerprint) -> list[str]:
    """`changed_files`' answer from two fingerprints (one listing, so no file can change in between)."""
    out = [f"-{rel}" for rel in previous if rel not in now]
    for rel, (size, mtime, digest) in now.items():
        old = previous.get(rel)
        if old is None or old[0] != size or (old[1] != mtime and (old[2] is None or digest != old[2])):
            out.append(rel)
    return sorted(out)
