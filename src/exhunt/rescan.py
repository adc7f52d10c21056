"""Incremental rescan: read only the new or changed files of a collection into the case an earlier
scan of it left, then let the scan run its rules and analytics over the union.

The kept case loses the artifacts (and their records, directives and line offsets) of changed and
removed files; new and changed files are read with artifact ids after the largest kept one. The
ingest problems and notes of the unchanged files are carried over from the earlier result, so the
scan's findings, evidence, coverage and verdict equal those of a full scan of the grown collection.
A path names an on-disk file relative to the collection; the members of a changed zip inside the
collection are read again with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exhunt.case import CaseWriter
from exhunt.collection import Collection, Entry, Skipped
from exhunt.ingest import IngestReport, Progress, ingest
from exhunt.result import Problem

INGEST_STAGES = ("inventory", "read", "store")


@dataclass
class Rescan:
    """What changed since the scan that wrote the kept case (plain data, picklable)."""

    changed: list[str]  # relative paths of files new or changed since then
    removed: list[str]  # relative paths of files gone since then
    problems: list[dict[str, Any]] = field(default_factory=list)  # that scan's errors[] (to_dict form)
    notes: list[dict[str, Any]] = field(default_factory=list)  # that scan's notes[]


def _under(path: str, files: set[str]) -> bool:
    """`path` is one of `files` or a member of one of them (`x.zip/inner.log`)."""
    if path in files:
        return True
    parts = path.split("/")
    return any("/".join(parts[:i]) in files for i in range(1, len(parts)))


class _Only(Collection):
    """The same collection, listing only the entries under the given files."""

    def __init__(self, inner: Collection, files: set[str]) -> None:  # the inner collection keeps all state
        self._inner, self._files = inner, files
        self.root, self.name = inner.root, inner.name

    def entries(self) -> Iterator[Entry | Skipped]:
        return (e for e in self._inner.entries() if _under(e.path.rstrip("/"), self._files))

    def open(self, path: str) -> Any:
        return self._inner.open(path)

    def local_path(self, path: str) -> str | None:
        return self._inner.local_path(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def close(self) -> None:  # the caller closes the real collection
        pass


def ingest_changes(
    collection: Collection,
    case: CaseWriter,
    rescan: Rescan,
    *,
    content_rules: Any,
    keep: dict[str, set[str] | None],
    threads: int,
    readers: int | None = None,
    progress: Progress | None = None,
    maps: tuple[Any, ...] = (),
) -> IngestReport:
    """Bring the kept case up to date with `collection`; the report covers every artifact of the union
    (`bytes_read` counts only what was read now)."""
    changed, removed = set(rescan.changed), set(rescan.removed)
    stale = changed | removed
    kept = case.reader.query("SELECT * FROM artifacts ORDER BY id")
    first = max((r["id"] for r in kept), default=0) + 1  # never a forgotten one's: its old records stay on disk
    case.forget_artifacts([r["id"] for r in kept if _under(r["path"], stale)])
    kept = [r for r in kept if not _under(r["path"], stale)]
    new = ingest(
        _Only(collection, changed), case, content_rules=content_rules, keep=keep, threads=threads, readers=readers,
        progress=progress, maps=maps, first_id=first,
    )  # fmt: skip
    carried = [_problem(p) for p in rescan.problems if p.get("stage") in INGEST_STAGES and not _stale(p, stale)]
    notes = [_problem(p, missed=False) for p in rescan.notes if not _stale(p, stale)]
    return IngestReport(
        artifacts=kept + new.artifacts,
        problems=carried + new.problems,
        notes=notes + new.notes,
        records=sum(int(r.get("records") or 0) for r in kept) + new.records,
        bytes_read=new.bytes_read,
    )


def _stale(problem: dict[str, Any], stale: set[str]) -> bool:
    return _under(str(problem.get("path") or "").rstrip("/"), stale)


def _problem(d: dict[str, Any], missed: bool | None = None) -> Problem:
    stage = d.get("stage") or "read"
    if missed is None:  # an empty file is a note-like problem that loses nothing
        missed = d.get("reason") != "empty file"
    return Problem(d.get("path") or "", d.get("line"), d.get("reason") or "", stage, missed)
