"""`exhunt collect SOURCE OUT.zip`: the evidence set of an image, a mounted volume or the live system.

The zip holds the files under their collection paths (`HOST/C/...`, so scanning the zip finds
what scanning the source finds), and `_exhunt/manifest.csv` (path, size, SHA-256, modified time,
`$SI`/`$FN` times and timestomping tells where the volume is NTFS), `_exhunt/filesystem.csv` (the
same records plus deleted files) and `_exhunt/collection-log.txt` (source, volumes, notes, what was
skipped and what the size bound left out). The bound counts the files' own bytes: web and
configuration files go first, then event logs, then logs newest first, then staging folders.
"""

from __future__ import annotations

import csv
import hashlib
import io
import struct
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exhunt.collection import Collection, Entry, Skipped
from exhunt.errors import UsageError
from exhunt.output.safe import csv_cell

META = "_exhunt"
_ORDER = {"config": 0, "web": 1, "events": 2, "logs": 3, "staging": 4}
_CHUNK = 1 << 20


@dataclass
class CollectSummary:
    files: int = 0
    bytes: int = 0
    left_out: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    partial: list[tuple[str, str]] = field(default_factory=list)

    def line(self, out: Path) -> str:
        text = f"wrote {out}: {self.files} file(s), {self.bytes:,} bytes"
        if self.left_out:
            text += f"; size bound left out {len(self.left_out)} file(s), {sum(s for _, s in self.left_out):,} bytes"
        if self.skipped or self.partial:
            text += f"; {len(self.skipped) + len(self.partial)} not (fully) read, see {META}/collection-log.txt"
        return text


def collect(collection: Collection, out: Path, max_bytes: int | None = None) -> CollectSummary:
    """Copy the collection's files into a new zip at `out`, within `max_bytes` of file content."""
    if out.exists():
        raise UsageError(f"{out} exists: collect writes a new zip and never replaces a file")
    root = Path(collection.root)
    if root.is_dir() and _inside(out, root):
        raise UsageError("the output zip must be written outside the evidence folder")
    summary = CollectSummary()
    entries: list[Entry] = []
    for e in collection.entries():
        if isinstance(e, Skipped):
            if not e.reason.startswith("coverage note: "):  # notes go to the log from collection.notes
                summary.skipped.append((e.path, e.reason))
        elif not e.inner:  # a member of a zip on the volume travels inside its zip
            entries.append(e)
    kinds = {i.path: i.kind for i in collection.listing()} if hasattr(collection, "listing") else {}
    chosen, left = _within_bound(entries, kinds, max_bytes)
    summary.left_out = [(e.path, e.size) for e in left]
    fs_rows = _filesystem_rows(collection)
    by_path = {r["path"]: r for r in fs_rows}
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\n")
    writer.writerow(
        [
            "path",
            "size",
            "sha256",
            "modified",
            "si_created",
            "si_modified",
            "fn_created",
            "fn_modified",
            "tells",
            "note",
        ]
    )
    try:
        with zipfile.ZipFile(out, "x", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf:
            for e in sorted(chosen, key=lambda e: e.path):
                sha, size, note = _copy(collection, e, zf)
                if note:
                    summary.partial.append((e.path, note))
                summary.files += 1
                summary.bytes += size
                rec = by_path.get(e.path, {})
                writer.writerow([csv_cell(v) for v in (
                    e.path, size, sha, _iso(e.mtime), _iso(rec.get("si_created")), _iso(rec.get("si_modified")),
                    _iso(rec.get("fn_created")), _iso(rec.get("fn_modified")), " ".join(rec.get("tells") or []), note,
                )])  # fmt: skip
            zf.writestr(f"{META}/manifest.csv", manifest.getvalue())
            zf.writestr(f"{META}/filesystem.csv", _filesystem_csv(fs_rows))
            zf.writestr(f"{META}/collection-log.txt", _log(collection, summary, max_bytes))
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return summary


def _within_bound(
    entries: list[Entry], kinds: dict[str, str], max_bytes: int | None
) -> tuple[list[Entry], list[Entry]]:
    if max_bytes is None:
        return entries, []

    def priority(e: Entry) -> tuple[int, float]:
        kind = kinds.get(e.path) or _kind_by_path(e.path)
        newest_first = -(e.mtime.timestamp() if e.mtime else 0.0)
        return (_ORDER.get(kind, 3), newest_first if kind in ("logs", "events") else float(e.size))

    chosen, left, total = [], [], 0
    for e in sorted(entries, key=priority):
        if total + e.size <= max_bytes:
            chosen.append(e)
            total += e.size
        else:
            left.append(e)
    return chosen, left


_PATH_KINDS = (
    ("config", ("/inetsrv/config/",)),
    ("web", ("/frontend/httpproxy/", "/clientaccess/", "/inetpub/wwwroot/")),
    ("events", ("/winevt/logs/", "/eventlogs/", ".evtx")),
    ("staging", ("/c/root/", "/programdata/", "/windows/temp/", "/users/public/")),
)


def _kind_by_path(path: str) -> str:
    """The evidence-set kind of a file of a folder or zip collection, from its path."""
    low = "/" + path.lower()
    return next((kind for kind, marks in _PATH_KINDS if any(m in low for m in marks)), "logs")


def _copy(collection: Collection, e: Entry, zf: zipfile.ZipFile) -> tuple[str, int, str]:
    """Stream one file into the zip, at most its listed size (a live log: the prefix present when listed)."""
    sha = hashlib.sha256()
    info = zipfile.ZipInfo(e.path, date_time=_zip_time(e.mtime))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.extra = _ntfs_extra(e.mtime)
    copied, note = 0, ""
    with zf.open(info, "w", force_zip64=e.size > (1 << 31)) as dst:
        try:
            with collection.open(e.path) as src:
                while copied < e.size:
                    block = src.read(min(_CHUNK, e.size - copied))
                    if not block:
                        note = f"short read: {copied:,} of {e.size:,} bytes"
                        break
                    sha.update(block)
                    dst.write(block)
                    copied += len(block)
        except OSError as exc:
            note = f"read failed after {copied:,} bytes: {exc}"
    return sha.hexdigest(), copied, note


def _filesystem_rows(collection: Collection) -> list[dict[str, Any]]:
    if not hasattr(collection, "walked_folders"):
        return []
    try:
        from exhunt.images.fsrecords import filesystem_records
    except ImportError:
        return []
    return filesystem_records(collection).to_pylist()


def _filesystem_csv(rows: list[dict[str, Any]]) -> str:
    """The NTFS records as CSV (read back into `fs_records` when the zip is scanned: fsrecords.py)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = ["host", "image", "path", "win_path", "kind", "mft_record", "parent_record", "deleted", "size",
            "si_created", "si_modified", "si_changed", "si_accessed", "fn_created", "fn_modified", "fn_changed",
            "fn_accessed", "ads", "tells"]  # fmt: skip
    writer.writerow(cols)
    for r in rows:
        writer.writerow(
            [
                csv_cell(" ".join(v) if isinstance(v, list) else _iso(v) if isinstance(v, datetime) else v)
                for v in (r.get(c) for c in cols)
            ]
        )
    return buf.getvalue()


def _log(collection: Collection, summary: CollectSummary, max_bytes: int | None) -> str:
    lines = [
        f"exhunt collect at {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"source: {getattr(collection, 'source', collection.root)}",
    ]
    lines += [f"note: {n}" for n in getattr(collection, "notes", [])[1:]]
    lines.append(f"files written: {summary.files} ({summary.bytes:,} bytes)")
    bound = f"{max_bytes:,} bytes" if max_bytes is not None else "none"
    left = sum(s for _, s in summary.left_out)
    lines.append(f"size bound: {bound}; left out: {len(summary.left_out)} file(s), {left:,} bytes")
    lines += [f"left out: {p} ({s:,} bytes)" for p, s in summary.left_out]
    lines += [f"skipped: {p}: {why}" for p, why in summary.skipped]
    lines += [f"partial: {p}: {why}" for p, why in summary.partial]
    return "\n".join(_printable(line) for line in lines) + "\n"


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else ("" if value is None else str(value))


def _ntfs_extra(mtime: datetime | None) -> bytes:
    """The zip NTFS extra field (0x000a): modified, accessed, created as 100 ns FILETIMEs, so the
    exact modified time survives the zip's 2-second DOS time (all three set to the modified time)."""
    if mtime is None:
        return b""
    d = mtime - datetime(1601, 1, 1, tzinfo=UTC)
    ticks = (d.days * 86400 + d.seconds) * 10_000_000 + d.microseconds * 10
    return struct.pack("<HHIHH3Q", 0x000A, 32, 0, 0x0001, 24, ticks, ticks, ticks)


def _zip_time(mtime: datetime | None) -> tuple[int, int, int, int, int, int]:
    if mtime is None or mtime.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    t = mtime.astimezone(UTC)
    return (min(t.year, 2107), t.month, t.day, t.hour, t.minute, t.second)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False
