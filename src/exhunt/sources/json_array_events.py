"""Events exported as one JSON array of objects (Log Analytics API / `az monitor log-analytics
query`, Sentinel hunting exports, some dataset dumps): `[{...}, {...}]`, pretty-printed or not.

The array is decoded object by object from bounded chunks (`raw_decode` on a sliding buffer), so a
large export never sits in memory whole; each object is mapped like a JSON-lines event
(`JsonLinesEventSource.add_object`, which knows the Winlogbeat, NXLog, flat and Sentinel shapes) and
`_line` is the line its `{` stands on. An object larger than `MAX_OBJECT_BYTES`, or text that is not
JSON, ends the read with an error naming the line; what was read before stays.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa

from exhunt.sources.base import ArtifactInfo, Source, text_head
from exhunt.sources.events import BATCH, TABLE, JsonLinesEventSource, _Batcher, message_note

READ_BYTES = 1 << 20
MAX_OBJECT_BYTES = 16 << 20
_EVENT_KEYS = ('"winlog"', '"EventID"', '"event_id"', '"Channel"', '"EventRecordID"')


class JsonArrayEventSource(Source):
    kind = "events-json-array"

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        text = text_head(head).lstrip()
        return text.startswith("[") and text[1:].lstrip().startswith("{") and any(k in text for k in _EVENT_KEYS)

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        info.table, info.log_type = TABLE, "JSON array"
        info.runs.append((1, 0))
        mapper, batch = JsonLinesEventSource(), _Batcher()
        for obj, line in _objects(stream, hasher, info):
            if isinstance(obj, dict):
                mapper.add_object(obj, line, batch, info)
            else:
                info.errors.append((line, "not a JSON object: item skipped"))
            if len(batch) >= BATCH:
                yield TABLE, batch.flush()
        if len(batch):
            yield TABLE, batch.flush()
        if mapper.parsed_from_message:
            info.log_type = "JSON array (message-only)"
            info.notes.append(message_note(mapper.parsed_from_message, info.records))


def _objects(stream: BinaryIO, hasher: object, info: ArtifactInfo) -> Iterator[tuple[object, int]]:
    """(item, line of its first character) for each item of the top-level array. An incomplete item
    is retried with twice the text each time (so a large item costs a few decodes, not one per chunk)."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    buf, line, want = "", 1, READ_BYTES
    started = finished = eof = False
    while not eof:
        chunk = stream.read(want)
        if chunk and hasher is not None:
            hasher.update(chunk)  # type: ignore[attr-defined]
        eof = not chunk
        if finished:  # after the closing bracket: read on for the hash only
            continue
        buf += utf8.decode(chunk, final=eof)
        pos = 0
        while True:
            rest = buf[pos:].lstrip(" \t\r\n,")
            line += buf.count("\n", pos, len(buf) - len(rest))
            pos = len(buf) - len(rest)
            if not rest:
                break
            if not started:
                if rest[0] != "[":
                    info.errors.append((line, "not a JSON array: file skipped"))
                    finished = True
                    break
                started, pos = True, pos + 1
                continue
            if rest[0] == "]":
                finished = True
                break
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except (ValueError, RecursionError):  # incomplete, invalid, or nested past the decoder's depth
                if eof or len(buf) - pos > MAX_OBJECT_BYTES:
                    info.errors.append((line, "not a JSON array item from here on: rest of the file skipped"))
                    finished = True
                else:
                    want = min(max(want, len(buf) - pos) * 2, MAX_OBJECT_BYTES)
                break
            want = READ_BYTES
            yield obj, line
            line += buf.count("\n", pos, end)
            pos = end
        buf = "" if finished else buf[pos:]
