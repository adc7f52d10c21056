"""Windows events: EVTX files (through the Rust-backed `evtx` package) and JSON-lines exports
(Winlogbeat/ECS, NXLog and the flat shape of public security datasets), mapped to one event model.

Every event becomes a row of the `events` table: `ts` (UTC), `channel`, `provider`, `event_id`,
`level` (1 critical .. 5 verbose), `computer`, `record_id`, `data` (EventData/UserData flattened to a
JSON object of strings; unnamed `<Data>` items become `param1..N`, as Winlogbeat names them) and
`message` (rendered text where the export has one). `_line` is the JSON-lines line, or null for EVTX.
Sentinel `SecurityEvent`/`Event` rows are mapped by `sentinel_events`; an event whose export kept only
its rendered text gets its fields from it (`message_fields.fill_from_message`, noted per file).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, BinaryIO

import evtx
import msgspec
import pyarrow as pa

from exhunt.families import family
from exhunt.sources.base import ArtifactInfo, Source, text_head
from exhunt.sources.delimited import ReadState, iter_lines_chunks
from exhunt.sources.message_fields import fill_from_message
from exhunt.sources.sentinel_events import is_sentinel_shape, normalise

EVENT_SCHEMA = pa.schema(
    [
        ("_line", pa.int64()),
        ("record_id", pa.int64()),
        ("ts", pa.timestamp("us")),
        ("channel", pa.string()),
        ("provider", pa.string()),
        ("event_id", pa.int32()),
        ("level", pa.int32()),
        ("computer", pa.string()),
        ("data", pa.string()),
        ("message", pa.string()),
    ]
)
BATCH = 20_000
TABLE = family("events").table
LEVELS = {"critical": 1, "error": 2, "warning": 3, "information": 4, "info": 4, "verbose": 5}


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 (with Z, fractions beyond microseconds, or ' UTC') to a naive UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)  # the common case in one call; the rest below
    except ValueError:
        return _loose_time(value)
    return _naive_utc(dt)


def _naive_utc(dt: datetime) -> datetime | None:
    """The naive UTC time of `dt`; None when that falls outside the calendar (a hostile
    `0001-01-01T00:00:00+01:00`)."""
    if dt.tzinfo is None:
        return dt
    if dt.tzinfo is UTC:  # `Z`, what most exports write: no arithmetic needed
        return dt.replace(tzinfo=None)
    try:
        return (dt - dt.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]
    except OverflowError:
        return None


def _loose_time(value: str) -> datetime | None:
    text = value.strip().replace(" UTC", "").replace("Z", "")
    if "." in text:
        head, frac = text.split(".", 1)
        rest = frac.lstrip("0123456789")  # the zone or text after the fraction's digits
        digits = frac[: len(frac) - len(rest)]
        text = f"{head}.{digits[:6]}{rest}"
    try:
        dt = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        return None
    return _naive_utc(dt)


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    if isinstance(v, dict) and "#text" in v:
        return _text(v["#text"])
    if isinstance(v, list):
        return "\n".join(_text(x) for x in v)
    return json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else str(v)


def flatten_event_data(section: Any) -> dict[str, str]:
    """EventData/UserData as evtx renders it -> flat {name: text}."""
    out: dict[str, str] = {}
    if not isinstance(section, dict):
        if section not in (None, ""):
            out["param1"] = _text(section)
        return out
    for key, value in section.items():
        if key == "#attributes":
            continue
        if key == "Data":
            items = value.get("#text") if isinstance(value, dict) else value
            items = items if isinstance(items, list) else [items]
            for i, item in enumerate(items, 1):
                out[f"param{i}"] = _text(item)
        elif isinstance(value, dict) and "#text" not in value:
            # UserData wraps its fields in one element named after the event
            for k2, v2 in value.items():
                if k2 != "#attributes":
                    out[k2] = _text(v2)
        else:
            out[key] = _text(value)
    return out


def _int(v: Any, bits: int = 32) -> int | None:
    """An integer field, or None when it is not one or does not fit its column (a hostile
    `"EventID": 99999999999` must not cost the batch its rows)."""
    if isinstance(v, dict):
        v = v.get("#text")
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        return None
    return n if -(1 << (bits - 1)) <= n < 1 << (bits - 1) else None


class _Batcher:
    """Event rows gathered as tuples (one per event, in EVENT_SCHEMA order) and turned into a table."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add(
        self,
        _line: int | None = None,
        record_id: int | None = None,
        ts: datetime | None = None,
        channel: str | None = None,
        provider: str | None = None,
        event_id: int | None = None,
        level: int | None = None,
        computer: str | None = None,
        data: str | None = None,
        message: str | None = None,
    ) -> None:
        self.rows.append((_line, record_id, ts, channel, provider, event_id, level, computer, data, message))

    def __len__(self) -> int:
        return len(self.rows)

    def flush(self) -> pa.Table:
        transposed = map(list, zip(*self.rows, strict=True)) if self.rows else ([] for _ in EVENT_SCHEMA.names)
        columns = dict(zip(EVENT_SCHEMA.names, transposed, strict=True))
        self.rows = []
        try:
            return pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)
        except UnicodeEncodeError:  # a lone surrogate escape ("\ud800") decoded into a field
            return pa.Table.from_pydict({k: [_unicode(v) for v in col] for k, col in columns.items()}, EVENT_SCHEMA)


def _unicode(v: Any) -> Any:
    """Text with lone surrogates replaced by U+FFFD (Arrow strings are UTF-8); anything else as is."""
    if isinstance(v, str):
        return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return v


EVTX_HEADER_BYTES = 4096
EVTX_CHUNK_BYTES = 65536


def evtx_truncation(header: bytes, size: int) -> str | None:
    """Say so if the file is shorter than the chunk count its header announces.

    The EVTX file header (4 KiB) stores the number of 64 KiB chunks as a 16-bit value at offset 42;
    the `evtx` parser silently stops at a cut chunk, so the loss has to be measured here.
    """
    if len(header) < 44:
        return f"EVTX header cut short ({size} bytes)"
    chunks = int.from_bytes(header[42:44], "little")
    expected = EVTX_HEADER_BYTES + chunks * EVTX_CHUNK_BYTES
    if size < expected:
        return (
            f"truncated EVTX: the header announces {chunks} chunk(s) ({expected:,} bytes) but the file has "
            f"{size:,} bytes; records in the missing part are lost"
        )
    return None


class EvtxSource(Source):
    kind = "evtx"

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        return head.startswith(b"ElfFile\x00")

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        info.table, info.log_type = TABLE, "EVTX"
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
            while chunk := stream.read(8 << 20):
                hasher.update(chunk)  # type: ignore[attr-defined]
                spool.write(chunk)
            size = spool.tell()
            spool.seek(0)
            problem = evtx_truncation(spool.read(4096), size)
            if problem:
                info.errors.append((None, problem))
            spool.seek(0)
            try:
                parser = evtx.PyEvtxParser(spool)
            except Exception as exc:  # the parser raises RuntimeError and others on bad headers
                info.errors.append((None, f"not a readable EVTX file: {exc}"))
                return
            batch = _Batcher()
            records = parser.records_json()
            while True:
                try:
                    rec = next(records)
                except StopIteration:
                    break
                except Exception as exc:  # a corrupt chunk or record: note it, keep going
                    info.errors.append((None, f"EVTX record unreadable: {str(exc).splitlines()[0][:200]}"))
                    continue
                self._add(rec, batch, info)
                if len(batch) >= BATCH:
                    yield TABLE, batch.flush()
            if len(batch):
                yield TABLE, batch.flush()

    @staticmethod
    def _add(rec: dict[str, Any], batch: _Batcher, info: ArtifactInfo) -> None:
        try:
            event = json.loads(rec["data"]).get("Event", {})
        except (ValueError, AttributeError):
            info.errors.append((None, f"EVTX record {rec.get('event_record_id')} is not valid JSON"))
            return
        system = event.get("System") or {}
        provider = system.get("Provider") or {}
        pattrs = provider.get("#attributes", {}) if isinstance(provider, dict) else {}
        data = flatten_event_data(event.get("EventData"))
        data.update(flatten_event_data(event.get("UserData")))
        created = (system.get("TimeCreated") or {}).get("#attributes", {}).get("SystemTime")
        batch.add(
            record_id=_int(system.get("EventRecordID"), 64) or rec.get("event_record_id"),
            ts=parse_time(created) or parse_time(rec.get("timestamp")),
            channel=_text(system.get("Channel")) or None,
            provider=pattrs.get("Name") or pattrs.get("EventSourceName"),
            event_id=_int(system.get("EventID")),
            level=_int(system.get("Level")),
            computer=_text(system.get("Computer")) or None,
            data=dumps(data),
        )
        info.records += 1


# JSON-lines key spellings: (winlogbeat/ECS dotted path, NXLog / flat dataset names)
_JSONL_KEYS = {
    "channel": ("winlog.channel", "Channel", "channel", "log_name"),
    "provider": ("winlog.provider_name", "SourceName", "ProviderName", "provider_name", "Provider"),
    "event_id": ("winlog.event_id", "EventID", "event_id", "event.code"),
    "record_id": ("winlog.record_id", "RecordNumber", "EventRecordID", "record_id"),
    "computer": ("winlog.computer_name", "Hostname", "Computer", "host.name", "computer_name"),
    "ts": ("@timestamp", "EventTime", "TimeCreated", "timestamp", "EventReceivedTime"),
    "level": ("winlog.level", "log.level", "Level", "SeverityValue", "level"),
    "message": ("message", "Message"),
}
_FLAT_NON_DATA = {k for keys in _JSONL_KEYS.values() for k in keys if "." not in k} | {
    "Severity", "Keywords", "Task", "Opcode", "ProcessID", "ThreadID", "EventType", "SourceModuleName",
    "SourceModuleType", "Category", "Version", "ActivityID", "@version", "tags",
}  # fmt: skip


def _dig(obj: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path (`winlog.channel`): nested objects, else the flattened key that
    some exports write (`{"winlog.channel": ...}`)."""
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return obj.get(dotted)
        cur = cur[part]
    return cur


@lru_cache(maxsize=256)
def _candidates(keys: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`_JSONL_KEYS` narrowed to the spellings an object with these top-level keys can hold (the
    objects of one export share their keys, so this is worked out once per shape)."""
    present = set(keys)
    return tuple(
        (name, tuple(k for k in spellings if k in present or k.split(".", 1)[0] in present))
        for name, spellings in _JSONL_KEYS.items()
    )


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        v = _dig(obj, k) if "." in k else obj.get(k)  # a plain key is one lookup (digging cost 2.4 s per 100k events)
        if v is not None and v != "":
            return v
    return None


_DECODE = msgspec.json.Decoder().decode
_ENCODE = msgspec.json.Encoder().encode


def loads(raw: bytes) -> Any:
    """One JSON document: msgspec's decoder (1.6x the standard one), else the standard one, which
    also takes what msgspec refuses (a lone surrogate escape) and fails the same way on the rest."""
    try:
        return _DECODE(raw)
    except (msgspec.DecodeError, RecursionError):
        return json.loads(raw)


def dumps(data: dict[str, str]) -> str:
    """A record's fields as JSON text (msgspec: 6x the standard encoder), non-ASCII kept as it is."""
    try:
        return _ENCODE(data).decode("utf-8")
    except (UnicodeEncodeError, TypeError, OverflowError):  # a lone surrogate, say
        return json.dumps(data, ensure_ascii=False)


def _level(v: Any) -> int | None:
    if isinstance(v, str) and not v.isdigit():
        return LEVELS.get(v.strip().lower())
    return _int(v)


class JsonLinesEventSource(Source):
    kind = "events-jsonl"
    python_bound = True
    splittable = True

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        text = text_head(head).lstrip()
        if not text.startswith("{"):
            return False
        first = text.split("\n", 1)[0]
        return any(k in first for k in ('"winlog"', '"EventID"', '"event_id"', '"Channel"', '"EventRecordID"'))

    parsed_from_message = 0  # events of the artifact whose fields were read from the rendered text

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        info.table, info.log_type = TABLE, "JSON lines"
        state = ReadState()
        state.errors, state.notes = info.errors, info.notes  # a NUL run, a cut last line: said as they are met
        batch = _Batcher()
        self.parsed_from_message = 0
        for chunk, first_line, _, offset in iter_lines_chunks(stream, state, hasher):
            info.runs.append((first_line, offset))
            for i, raw in enumerate(chunk.split(b"\n")):
                if not raw.strip():
                    continue
                self._add(raw, first_line + i, batch, info)
                if len(batch) >= BATCH:
                    yield TABLE, batch.flush()
        if self.parsed_from_message:
            info.log_type = "JSON lines (message-only)"
            info.notes.append(message_note(self.parsed_from_message, info.records))
        if len(batch):
            yield TABLE, batch.flush()

    def _add(self, raw: bytes, line: int, batch: _Batcher, info: ArtifactInfo) -> None:
        try:
            obj = loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested past the decoder's depth
            info.errors.append((line, "not a JSON object: line skipped"))
            return
        if not isinstance(obj, dict):
            info.errors.append((line, "not a JSON object: line skipped"))
            return
        self.add_object(obj, line, batch, info)

    def add_object(self, obj: dict[str, Any], line: int, batch: _Batcher, info: ArtifactInfo) -> None:
        """One event object of any supported shape (also used for JSON-array exports)."""
        keys = tuple(obj)
        if is_sentinel_shape(keys):
            self._add_row(normalise(obj), line, batch, info)
            return
        winlog = "winlog" in obj or "winlog.event_data" in obj or "winlog.user_data" in obj  # nested or dotted
        data_obj = _dig(obj, "winlog.event_data") if winlog else None
        if data_obj is None:
            data_obj = obj.get("EventData") if isinstance(obj.get("EventData"), dict) else None
        user = _dig(obj, "winlog.user_data") if winlog else None
        if data_obj is None and isinstance(user, dict):
            data_obj = {}  # UserData-only events (1102, 1149): their fields are merged below
        if isinstance(data_obj, dict):
            data = {k: v if isinstance(v, str) else _text(v) for k, v in data_obj.items()}
            if isinstance(user, dict):
                data.update({k: _text(v) for k, v in user.items()})
        else:  # flat NXLog / dataset shape: every other key is event data
            data = {
                k: v if isinstance(v, str) else _text(v)
                for k, v in obj.items()
                if k not in _FLAT_NON_DATA and not isinstance(v, dict)
            }
        row = {name: _first(obj, spellings) for name, spellings in _candidates(keys)}
        row["data"] = data
        self._add_row(row, line, batch, info)

    def _add_row(self, row: dict[str, Any], line: int, batch: _Batcher, info: ArtifactInfo) -> None:
        """One event from its export columns; fields the export left only in the message are parsed."""
        data, message = row["data"], row.get("message")
        channel = _text(row.get("channel")) or None
        provider = _text(row.get("provider")) or None
        event_id = _int(row.get("event_id"))
        if message is not None and fill_from_message(data, channel, provider, event_id, _text(message)):
            self.parsed_from_message += 1
        batch.add(
            _line=line,
            record_id=_int(row.get("record_id"), 64),
            ts=parse_time(row.get("ts")),
            channel=channel,
            provider=provider,
            event_id=event_id,
            level=_level(row.get("level")),
            computer=_text(row.get("computer")) or None,
            data=dumps(data),
            message=_text(message) if message is not None else None,
        )
        info.records += 1


def message_note(parsed: int, records: int) -> str:
    """The coverage note of an artifact whose events kept only their rendered text."""
    return (
        f"{parsed:,} of {records:,} event(s) kept their fields only in the rendered text: their fields were "
        "parsed from the rendered Message (data key _parsed_from; a field the export kept wins)"
    )
