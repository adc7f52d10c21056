"""Microsoft Sentinel / Log Analytics `SecurityEvent` and `Event` tables exported as CSV.

Recognised by the header row (a time column `TimeGenerated` or `TimeGenerated [UTC]`, `EventID`, and
a channel/provider column); each record becomes an `events` row through the same declared column map
as the JSON form (`sentinel_events.normalise`), so a message-only `Event` export gets its fields from
`RenderedDescription`. A record may span several physical lines (a quoted multi-line message):
`_line` is the line it starts on. Fields are capped (`MAX_FIELD_CHARS`), a longer one is an error of
its record, and the rest of the file is still read.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO

import pyarrow as pa

from exhunt.sources.base import ArtifactInfo, Source, text_head
from exhunt.sources.events import BATCH, TABLE, _Batcher, _int, _level, dumps, message_note, parse_time
from exhunt.sources.message_fields import fill_from_message
from exhunt.sources.sentinel_events import normalise, sentinel_map

READ_BYTES = 1 << 20
MAX_FIELD_CHARS = 16 << 20
MAX_LINE_CHARS = 64 << 20
_TIME_COLUMNS = ("TimeGenerated", "TimeGenerated [UTC]")
_US_TIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}),?\s+(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?\s*([AP]M)?$", re.I)


def _header(head: bytes) -> list[str] | None:
    first = text_head(head).split("\n", 1)[0].rstrip("\r")
    try:
        return next(csv.reader([first]))
    except (csv.Error, StopIteration):
        return None


def portal_time(value: Any) -> datetime | None:
    """ISO-8601, or the Log Analytics portal's `3/3/2021, 4:11:58.214 AM` (UTC)."""
    if not isinstance(value, str):
        return None
    if "/" not in value:  # ISO-8601 never has one
        return parse_time(value)
    m = _US_TIME.match(value.strip())
    if not m:
        return None
    month, day, year, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if m.group(8):
        hour = hour % 12 + (12 if m.group(8).upper() == "PM" else 0)
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    try:
        return datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return None


class SentinelEventCsvSource(Source):
    kind = "events-sentinel-csv"

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        end = head.find(b"\n")  # its header line names EventID: most files stop here, not copied or parsed
        if head.find(b"EventID", 0, end if end >= 0 else len(head)) < 0:
            return False
        names = _header(head)
        if not names:
            return False
        have = set(names)
        m = sentinel_map()
        return bool(have & set(_TIME_COLUMNS)) and "EventID" in have and any(k in have for k in m.detect_any)

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        info.table, info.log_type = TABLE, "Sentinel CSV"
        info.runs.append((1, 0))
        csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
        batch, parsed = _Batcher(), 0
        reader = csv.reader(_lines(stream, hasher, info), strict=False)
        header: list[str] | None = None
        start = 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                info.errors.append((start, f"CSV record unreadable: {str(exc)[:200]}"))
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if header is None:
                header = record
                continue
            if not any(record):
                continue
            row = normalise(dict(zip(header, record, strict=False)))
            if self._add(row, line, batch, info):
                parsed += 1
            if len(batch) >= BATCH:
                yield TABLE, batch.flush()
        if len(batch):
            yield TABLE, batch.flush()
        if parsed:
            info.log_type = "Sentinel CSV (message-only)"
            info.notes.append(message_note(parsed, info.records))

    @staticmethod
    def _add(row: dict[str, Any], line: int, batch: _Batcher, info: ArtifactInfo) -> bool:
        data, message = row["data"], row.get("message")
        channel, provider = row.get("channel") or None, row.get("provider") or None
        event_id = _int(row.get("event_id"))
        parsed = fill_from_message(data, channel, provider, event_id, message)
        batch.add(
            _line=line,
            ts=portal_time(row.get("ts")),
            channel=channel,
            provider=provider,
            event_id=event_id,
            level=_level(row.get("level")),
            computer=row.get("computer") or None,
            data=dumps(data),
            message=message or None,
        )
        info.records += 1
        return parsed


def _lines(stream: BinaryIO, hasher: object, info: ArtifactInfo) -> Iterator[str]:
    """The file's physical lines (ends kept), decoded as UTF-8 (BOM dropped, bad bytes replaced); a
    line longer than `MAX_LINE_CHARS` is replaced by an empty line (numbering kept) with an error."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    carry = ""
    number = 0
    skipping = False
    while True:
        chunk = stream.read(READ_BYTES)
        if chunk and hasher is not None:
            hasher.update(chunk)  # type: ignore[attr-defined]
        text = carry + decoder.decode(chunk, final=not chunk)
        parts = text.split("\n")
        carry = parts.pop()
        for part in parts:
            number += 1
            yield "\n" if skipping else part + "\n"
            skipping = False
        if len(carry) > MAX_LINE_CHARS and not skipping:
            info.errors.append((number + 1, f"line longer than {MAX_LINE_CHARS:,} characters: skipped"))
            skipping = True
        if skipping:
            carry = ""
        if not chunk:
            if carry:
                yield carry
            return
