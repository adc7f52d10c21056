"""A large host read by several dask tasks at once: each shard task reads one contiguous range of the
host's files (in the collection's own order, so the artifact ids are those of a one-task scan) into a
shard case; the host's finishing task copies the shards into the host's case in order, then runs the
scan's rules and analytics over the whole (exhunt.rescan with nothing left to read).

Input and output of both tasks are plain data (picklable, JSON-ready).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exhunt.collection import Collection, Entry, Skipped


def shard_ranges(sizes: list[int], parts: int) -> list[tuple[int, int]]:
    """Split entries (by their sizes, in order) into at most `parts` contiguous ranges of similar bytes."""
    total, parts = sum(sizes), max(1, min(parts, len(sizes)))
    if parts == 1:
        return [(0, len(sizes))]
    ranges, start, acc = [], 0, 0
    for i, size in enumerate(sizes):
        acc += size
        if len(ranges) < parts - 1 and acc >= total * (len(ranges) + 1) / parts and i + 1 < len(sizes):
            ranges.append((start, i + 1))
            start = i + 1
    ranges.append((start, len(sizes)))
    return ranges


class _Range(Collection):
    """The same collection, listing only its files start..stop (and, for the first range, what was skipped)."""

    def __init__(self, inner: Collection, start: int, stop: int) -> None:  # the inner collection keeps all state
        self._inner, self._start, self._stop = inner, start, stop
        self.root, self.name = inner.root, inner.name

    def entries(self) -> Iterator[Entry | Skipped]:
        files = [e for e in self._inner.entries() if not isinstance(e, Skipped)]
        skipped = [e for e in self._inner.entries() if isinstance(e, Skipped)] if self._start == 0 else []
        return iter(skipped + files[self._start : self._stop])

    def open(self, path: str) -> Any:
        return self._inner.open(path)

    def local_path(self, path: str) -> str | None:
        return self._inner.local_path(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def host_files(path: Path) -> list[int]:
    """The sizes of the files a scan of `path` reads, in the order it reads them."""
    from exhunt.collection import open_collection

    collection = open_collection(path)
    try:
        return [e.size for e in collection.entries() if not isinstance(e, Skipped)]
    finally:
        collection.close()


def read_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Read files start..stop of the host into the shard case `task["shard"]`; its ingest problems and notes."""
    from exhunt.case import CaseWriter
    from exhunt.collection import open_collection
    from exhunt.ingest import ingest
    from exhunt.rules.yara import compile_rules

    cpu = time.process_time()
    shard = Path(task["shard"])
    shard.parent.mkdir(parents=True, exist_ok=True)
    for p in (shard, Path(f"{shard}.wal")):
        p.unlink(missing_ok=True)
    collection = open_collection(Path(task["path"]))
    case = CaseWriter(shard, memory_limit=task.get("memory_limit", "512MB"), threads=1)
    try:
        start, stop = task["range"]
        report = ingest(
            _Range(collection, start, stop), case, content_rules=compile_rules(None), keep={}, threads=1,
            first_id=start + 1,
        )  # fmt: skip
    finally:
        case.close()
        collection.close()
    return {
        "shard": str(shard),
        "problems": [p.to_dict() for p in report.problems],
        "notes": [p.to_dict() for p in report.notes],
        "files_read": stop - start,
        "bytes_read": report.bytes_read,
        "cpu_seconds": round(time.process_time() - cpu, 3),
    }


def merge_shards(case: Path, shards: list[dict[str, Any]], memory_limit: str = "512MB") -> dict[str, Any]:
    """A fresh host case holding every shard's records, in shard order; the shards are removed. Returns the
    rescan plan that makes `scan` run over it without reading anything again."""
    from exhunt.case import CaseWriter

    for p in (case, Path(f"{case}.wal")):
        p.unlink(missing_ok=True)
    writer = CaseWriter(case, memory_limit=memory_limit, threads=1)
    try:
        for s in shards:
            writer.absorb(Path(s["shard"]))
    finally:
        writer.close()
    for s in shards:
        for p in (Path(s["shard"]), Path(f"{s['shard']}.wal")):
            p.unlink(missing_ok=True)
    return {
        "changed": [],
        "removed": [],
        "problems": [p for s in shards for p in s["problems"]],
        "notes": [n for s in shards for n in s["notes"]],
    }
