"""Field maps: how the columns of an exported log (a SIEM export, a tool's CSV, any renamed table)
become the columns of an exhunt log family, declared as data.

A map is one YAML document (built-in ones live in `sources/maps/`, a user's comes with
`exhunt scan --map FILE`):

```yaml
name: splunk-iis                  # short id, shown in coverage and notes
title: Splunk export of IIS logs  # what the reader calls such a file
family: iis                       # the exhunt family its rows join (a rule `source:` name)
formats: [csv, json]              # file shapes it applies to
root: result                      # optional (JSON): the key that wraps each record
detect: [c_ip, cs_uri_stem]       # fields a file must have (each may be a list of spellings)
columns:                          # family column <- export field (or a list of spellings)
  cs-uri-stem: cs_uri_stem
  cs(User-Agent): [cs_User_Agent_, useragent]
time: [_time, timestamp]          # a time field, when the family's own time columns are not mapped
constants: {}                     # family column <- fixed value
note: ...                         # optional caveat, repeated in the file's notes
fields: [a, b, c]                 # optional (CSV): the rows' fields by position, when the header
                                  # names them wrongly (a column added without a name)
```

Names are matched without case. A field present in neither spelling stays empty. The family's time
columns (`date`/`time` for IIS, `DateTime` for Exchange logs) are filled from `time` when the map
does not name them: ISO 8601 (with `Z`, an offset or none: UTC), `M/D/YYYY h:mm:ss AM`, epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from exhunt import safe_yaml
from exhunt.errors import UsageError
from exhunt.families import RULE_SOURCES, family

FORMATS = ("csv", "json")
MAX_MAP_BYTES = 1 << 20
EVENT_COLUMNS = ("ts", "channel", "provider", "event_id", "level", "computer", "record_id", "message")


@dataclass(frozen=True)
class FieldMap:
    """One declared mapping from an export's fields to a family's columns."""

    name: str
    title: str
    family: str
    formats: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]  # family column -> export spellings, in order of preference
    detect: tuple[tuple[str, ...], ...] = ()  # every entry must be present (any of its spellings)
    time: tuple[str, ...] = ()
    constants: dict[str, str] = field(default_factory=dict)
    root: str | None = None
    note: str | None = None
    fields: tuple[str, ...] = ()  # CSV: the rows' fields by position, when the header names them wrongly
    origin: str = ""  # the file it was loaded from

    def describe(self) -> str:
        """`name (title): column<-field, ...`, for notes that record which mapping was used."""
        pairs = [f"{target}<-{'|'.join(names)}" for target, names in self.columns.items()]
        if self.time:
            pairs.append(f"time<-{'|'.join(self.time)}")
        return f"{self.name} ({self.title}): " + ", ".join(pairs)

    def matches(self, names: set[str]) -> int:
        """How many of the map's fields `names` (lower-cased stored names) hold; 0 if a detect field
        is absent."""
        for options in self.detect:
            if not any(stored_name(o) in names for o in options):
                return 0
        wanted = [*self.columns.values(), self.time] if self.time else list(self.columns.values())
        return sum(1 for options in wanted if any(stored_name(o) in names for o in options))


def stored_name(name: str) -> str:
    """A field name as the delimited reader stores it, lower-cased (a leading `_` gets `field`)."""
    name = name.strip()
    return ("field" + name if name.startswith("_") else name).lower()


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str | int) and str(v).strip() for v in items):
        raise ValueError(f"{where}: a field name or a list of field names")
    return tuple(str(v).strip() for v in items)


def parse_map(doc: Any, origin: str) -> FieldMap:
    """A FieldMap from one YAML document; ValueError names what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("a field map is a YAML mapping")
    unknown = set(doc) - {
        "name",
        "title",
        "family",
        "formats",
        "columns",
        "detect",
        "time",
        "constants",
        "root",
        "note",
        "fields",
    }
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    fam = str(doc.get("family", ""))
    if fam not in RULE_SOURCES or family(fam).kind not in ("log", "events"):
        raise ValueError(f"family {fam!r} is not a log family (e.g. iis, httpproxy, ecp_server, events)")
    columns = doc.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise ValueError("columns: a mapping of family column -> export field")
    cols = {str(k): _names(v, f"columns.{k}") for k, v in columns.items()}
    if family(fam).kind == "events" and set(cols) - set(EVENT_COLUMNS):
        raise ValueError(f"event maps fill only {', '.join(EVENT_COLUMNS)}")
    formats = tuple(doc.get("formats") or FORMATS)
    if set(formats) - set(FORMATS):
        raise ValueError(f"formats: any of {', '.join(FORMATS)}")
    detect = doc.get("detect")
    if detect is None:  # a user's map: every field it names must be there
        detected = tuple(cols.values()) + ((_names(doc["time"], "time"),) if doc.get("time") else ())
    elif isinstance(detect, list):
        detected = tuple(_names(d, "detect") for d in detect)
    else:
        raise ValueError("detect: a list of field names (each may be a list of spellings)")
    fields = _names(doc["fields"], "fields") if doc.get("fields") else ()
    if len(fields) > 1024 or len({f.lower() for f in fields}) != len(fields):
        raise ValueError("fields: up to 1,024 distinct field names, one per column of the rows in order")
    constants = doc.get("constants") or {}
    if not isinstance(constants, dict):
        raise ValueError("constants: a mapping of family column -> value")
    return FieldMap(
        name=str(doc.get("name") or Path(origin).stem),
        title=str(doc.get("title") or doc.get("name") or Path(origin).stem),
        family=fam,
        formats=formats,
        columns=cols,
        detect=detected,
        time=_names(doc["time"], "time") if doc.get("time") else (),
        constants={str(k): str(v) for k, v in constants.items()},
        root=str(doc["root"]) if doc.get("root") else None,
        note=str(doc["note"]) if doc.get("note") else None,
        fields=fields,
        origin=origin,
    )


def load_map_file(path: Path) -> FieldMap:
    """A user's map (`--map FILE`); UsageError with the reason when it cannot be used."""
    try:
        return parse_map(safe_yaml.load(safe_yaml.read_text(path, MAX_MAP_BYTES)), str(path))
    except OSError as exc:
        raise UsageError(f"cannot read field map {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"field map {path}: {safe_yaml.describe(exc)}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"field map {path}: {exc}") from exc


def builtin_maps() -> tuple[FieldMap, ...]:
    """The maps shipped in `exhunt/sources/maps/`, by file name."""
    global _BUILTIN
    if _BUILTIN is None:
        folder = resources.files("exhunt.sources") / "maps"
        docs = sorted((p.name, p.read_text("utf-8")) for p in folder.iterdir() if p.name.endswith(".yaml"))
        _BUILTIN = tuple(parse_map(safe_yaml.load(text), f"exhunt/sources/maps/{name}") for name, text in docs)
    return _BUILTIN


_BUILTIN: tuple[FieldMap, ...] | None = None


def best_map(maps: tuple[FieldMap, ...], names: set[str], fmt: str) -> FieldMap | None:
    """The map of `fmt` that holds most of `names` (lower-cased stored names); the first on a tie."""
    best, score = None, 0
    for m in maps:
        if fmt in m.formats and (s := m.matches(names)) > score:
            best, score = m, s
    return best


# --- applying a map to parsed rows -------------------------------------------------------------


def apply_map(rows: pa.Table, fmap: FieldMap, empty: tuple[str, ...]) -> tuple[pa.Table, int]:
    """The rows under the family's own column names (plus `_line`), and how many rows were dropped
    because they hold none of the mapped fields (another record type in the same export)."""
    by_lower = {name.lower(): name for name in rows.column_names}
    fam = family(fmap.family)
    n = rows.num_rows
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    for target, options in fmap.columns.items():
        source = next((by_lower[stored_name(o)] for o in options if stored_name(o) in by_lower), None)
        if source is not None:
            out[target] = _null_empty(_as_text(rows.column(source)), empty)
    present = pc.is_valid(out[next(iter(out))]) if out else pa.array([False] * n)
    for col in list(out)[1:]:
        present = pc.or_(present, pc.is_valid(out[col]))
    time_source = next((by_lower[stored_name(o)] for o in fmap.time if stored_name(o) in by_lower), None)
    if fam.kind == "events":
        when = out.pop("ts", None)
        if when is None and time_source is not None:
            when = _as_text(rows.column(time_source))
        out["ts"] = parse_times(when) if when is not None else pa.nulls(n, pa.timestamp("us"))
    elif not all(c in out for c in fam.time_columns[:1]) and time_source is not None:
        ts = parse_times(_as_text(rows.column(time_source)))
        # a timestamp cast to text is `YYYY-MM-DD hh:mm:ss[.fff]`: cut and joined, it gives what
        # strftime gave, 7x faster (strftime was a third of reading an Elastic export); floored, so a
        # time before 1970 is not rounded up to the next second as a plain cast does
        if fam.time_columns == ("date", "time"):
            text = pc.cast(pc.cast(pc.floor_temporal(ts, unit="second"), pa.timestamp("s")), pa.string())
            out["date"] = pc.utf8_slice_codeunits(text, 0, 10)
            out["time"] = pc.utf8_slice_codeunits(text, 11, 19)
        else:
            text = pc.cast(pc.cast(pc.floor_temporal(ts, unit="millisecond"), pa.timestamp("ms")), pa.string())
            out[fam.time_columns[0]] = pc.binary_join_element_wise(
                pc.replace_substring(text, " ", "T", max_replacements=1), "Z", ""
            )
    for target, value in fmap.constants.items():
        out[target] = pa.array([value] * n, pa.string())
    keep = pc.fill_null(present, False)
    if fam.kind == "events":
        table = _event_table(out, rows.column("_line"), n)
    else:
        table = pa.table({**out, "_line": rows.column("_line")})
    dropped = n - pc.sum(keep).as_py() if n else 0
    return (table.filter(keep) if dropped else table), dropped


def _event_table(out: dict[str, Any], lines: Any, n: int) -> pa.Table:
    """Mapped event columns as the events table's schema (the EVTX reader's), absent ones null."""
    from exhunt.sources.events import EVENT_SCHEMA

    cols = []
    for f in EVENT_SCHEMA:
        if f.name == "_line":
            cols.append(pc.cast(lines, f.type))
        elif f.name not in out:
            cols.append(pa.nulls(n, f.type))
        elif pa.types.is_integer(f.type):
            col = out[f.name]
            cols.append(pc.cast(col, f.type, safe=False) if _all_ints(col) else pa.nulls(n, f.type))
        else:
            cols.append(pc.cast(out[f.name], f.type))
    return pa.Table.from_arrays(cols, schema=EVENT_SCHEMA)


def _as_text(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col
    if pa.types.is_null(col.type):
        return pc.cast(col, pa.string())
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # lists, structs: their JSON text
        import json

        return pa.array([None if v is None else json.dumps(v, default=str) for v in col.to_pylist()], pa.string())


def _null_empty(col: pa.ChunkedArray | pa.Array, empty: tuple[str, ...]) -> pa.ChunkedArray | pa.Array:
    if not empty:
        return col
    blank = pc.fill_null(pc.is_in(col, pa.array(list(empty), pa.string())), False)
    return pc.if_else(blank, pa.scalar(None, pa.string()), col) if pc.any(blank).as_py() else col


def _all_ints(col: pa.ChunkedArray | pa.Array) -> bool:
    return bool(pc.all(pc.fill_null(pc.match_substring_regex(col, r"^-?\d{1,18}$"), True)).as_py())


_TZ_SUFFIX = r"(Z|[+-]\d{2}:?\d{2}| ?UTC)$"


def parse_times(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Export time values as naive UTC timestamps (null where unreadable). ISO 8601 is parsed by
    Arrow in one call; other spellings value by value."""
    text = pc.utf8_trim_whitespace(col)
    has_zone = pc.fill_null(pc.match_substring_regex(text, r"(Z|[+-]\d{2}:?\d{2})$"), False)
    try:
        if pc.all(has_zone).as_py():
            iso = pc.replace_substring_regex(text, r"([+-]\d{2})(\d{2})$", r"\1:\2")
            return pc.cast(pc.cast(iso, pa.timestamp("us", tz="UTC")), pa.timestamp("us"))
        if not pc.any(has_zone).as_py():
            return pc.cast(pc.replace_substring_regex(text, " ?UTC$", ""), pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return pa.array([_one_time(v) for v in text.to_pylist()], pa.timestamp("us"))


_US_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y, %I:%M:%S %p", "%m/%d/%Y, %H:%M:%S")


def _one_time(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.strip().replace(" UTC", "").replace("[UTC]", "").strip()
    if text.replace(".", "", 1).isdigit():  # epoch seconds (Splunk's _time may be one)
        try:
            return datetime.fromtimestamp(float(text), UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        dt = None
        head, _, frac = text.partition(".")
        if frac:  # 4:11:58.123 AM: drop the fraction, keep what follows it
            rest = frac.lstrip("0123456789")
            text = head + rest
        for fmt in _US_FORMATS:
            try:
                dt = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt
