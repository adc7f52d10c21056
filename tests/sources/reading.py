"""Read one artifact with one source, parsing its runs of data lines one by one (the scan's reader
batches runs across files instead; both give the same rows)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa

from exhunt.sources.base import ArtifactInfo, Source
from exhunt.sources.delimited import RawRows, parse_batch


def read_tables(
    source: Source, stream: BinaryIO, info: ArtifactInfo, hasher: object | None = None
) -> Iterator[tuple[str, pa.Table]]:
    for table, part in source.read(stream, info, hasher):
        if isinstance(part, RawRows):
            part, _ = parse_batch([part], source.keep.get(table))
            info.records += part.num_rows
        yield table, part
