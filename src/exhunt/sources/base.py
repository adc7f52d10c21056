"""Source base class and registry.

A Source recognises its artifact by content first (`sniff` on the first bytes) and path second, and
reads it into Arrow tables destined for one store table each. Sources never print and never raise on
bad content: problems go to `ArtifactInfo.errors` with a line number where known.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa

from exhunt.sources.delimited import RawRows


@dataclass
class ArtifactInfo:
    """What was learnt about one artifact while reading it."""

    path: str
    table: str | None = None  # case table its records went to
    log_type: str | None = None
    version: str | None = None  # build in the #Version directive (Exchange logs)
    records: int = 0
    directives: list[tuple[int, str, str]] = field(default_factory=list)
    runs: list[tuple[int, int]] = field(default_factory=list)  # (first line, byte offset) of each run of lines
    errors: list[tuple[int | None, str]] = field(default_factory=list)  # lines or parts not read, and why
    notes: list[str] = field(default_factory=list)  # remarks that lose no record (e.g. a cut last line)
    empty: bool = False  # an empty file where a log was expected


class Source:
    """Base class: subclass, set `kind`, implement `sniff` and `read`."""

    kind: ClassVar[str] = ""
    scan_content: ClassVar[bool] = False  # also run the content rules on the file (e.g. a web.config shell)
    python_bound: ClassVar[bool] = False  # read in Python from end to end: one such file at a time
    # each line a record read alone, so any stretch of whole lines reads apart (in worker processes)
    splittable: ClassVar[bool] = False

    def __init__(self, keep: dict[str, set[str] | None] | None = None) -> None:
        self.keep = keep or {}  # store table -> lower-cased columns to build (absent: all)

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        raise NotImplementedError

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table | RawRows]]:
        """Yield (case table name, rows). Rows are an Arrow table with an int64 `_line` column, or
        unparsed `RawRows` that the caller parses, batched with other files'."""
        raise NotImplementedError


def text_head(head: bytes) -> str:
    """The first bytes as text, without a BOM."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return head.decode("utf-8", "replace")


HEAD_BYTES = 8192  # the head the reader sniffs a file by (and a worker process reads first)


class HashAfter:
    """Hashes what a source reads after the first `skip` bytes, which were hashed when sniffing."""

    def __init__(self, hasher: Any, skip: int) -> None:
        self.hasher, self.skip = hasher, skip

    def update(self, data: bytes) -> None:
        if self.skip:
            cut = min(self.skip, len(data))
            # a view, not a slice: slicing copied each file's first chunk (8 MB) holding the GIL
            data, self.skip = memoryview(data)[cut:], self.skip - cut
        if data:
            self.hasher.update(data)


def again(head: bytes, stream: BinaryIO) -> BinaryIO:
    """`stream` once more from where `head` was read from it. A file on disk is sought back; joining
    the head to the next read instead made a second buffer of each file's first chunk (one more copy
    and the page faults of a new buffer: 5% of reading 1 GB of logs). Other streams (a zip member)
    replay the head."""
    if isinstance(stream, io.BufferedReader):
        stream.seek(-len(head), io.SEEK_CUR)
        return stream
    return Replay(head, stream)


class Replay:
    """A stream that gives `head` again before the rest: the reader hands one to the source after
    sniffing a file's head, and a source that read ahead to decide how to read (a field map, an
    inferred field list) hands one to the line splitter. Forward only."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head, self.stream = head, stream

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.stream.read(n)
        if n < 0:
            data, self.head = self.head + self.stream.read(), b""
            return data
        data, self.head = self.head[:n], self.head[n:]
        if len(data) < n:
            data += self.stream.read(n - len(data))
        return data

    def seek(self, *args: object) -> int:  # pragma: no cover - sources read forward only
        raise OSError("not seekable")
