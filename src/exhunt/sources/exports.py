"""Exported logs read through field maps: SIEM exports (Splunk, Elastic, Sentinel), tool outputs
(Test-ProxyLogon's CSV files) and anything a user's `--map FILE` describes.

Recognised by content: a CSV file's header row (after any `#TYPE`-style comment lines, as Windows
PowerShell's Export-Csv writes) or a JSON-lines file's first object (nested keys joined with `.`,
a wrapper such as Splunk's `result` or Elastic's `_source` unwrapped) must hold the fields a map
(`sources/fieldmap.py`, `sources/maps/*.yaml`) detects on. The rows then join the map's family
under the family's own column names, each with its physical line, so every rule of that family
runs on them and evidence shows the export's own line (for JSON lines, the JSON object).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from exhunt.families import family
from exhunt.sources.base import ArtifactInfo, Source, again, text_head
from exhunt.sources.delimited import (
    EXCHANGE_CSV,
    MAX_FIELDS,
    ReadState,
    iter_lines_chunks,
    parse_batch,
    safe_names,
    split_csv_line,
    split_rows,
)
from exhunt.sources.fieldmap import FieldMap, apply_map, best_map, builtin_maps, stored_name

MAX_DEPTH = 8  # nested JSON deeper than this is kept as the text of the nested value
_KEY = re.compile(r'"([^"\\]{1,128})"\s*:')


def head_fields(head: bytes) -> tuple[str, set[str]] | None:
    """("csv" | "json", lower-cased stored field names) of a file's first record, or None."""
    text = text_head(head)
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines[:-1] if ln] if len(lines) > 1 else [ln for ln in lines if ln]
    if not lines:
        return None
    first = next((ln for ln in lines if not ln.startswith("#")), None)
    if first is None:
        return None
    if first.startswith(("{", "[")):
        return "json", _json_head_keys(lines)
    names = split_csv_line(first)
    if len(names) < 2:
        return None
    return "csv", {stored_name(n) for n in names if n.strip()}


def _json_head_keys(lines: list[str]) -> set[str]:
    for ln in lines[:3]:
        ln = ln.lstrip("[").rstrip(",]").strip()
        if not ln.startswith("{"):
            continue
        try:
            obj = json.loads(ln)
        except (ValueError, RecursionError):
            break
        if isinstance(obj, dict):
            flat = flatten(obj)
            keys = {k.lower() for k in flat}
            for k in list(keys):  # a wrapper key (result., _source.) unwrapped
                head, _, rest = k.partition(".")
                if rest and head in ("result", "_source"):
                    keys.add(rest)
            return keys
    # the first object is longer than the head: its keys, each also under every dotted tail
    keys = set()
    for k in _KEY.findall("\n".join(lines)):
        keys.add(k.lower())
    return keys | {f"*.{k}" for k in keys}


def flatten(obj: dict[str, Any], prefix: str = "", depth: int = 0, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested objects as one level of `a.b.c` keys; lists and too-deep values as their JSON text."""
    out = {} if out is None else out
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < MAX_DEPTH:
            flatten(v, key + ".", depth + 1, out)
        elif isinstance(v, dict | list):
            out[key] = json.dumps(v, ensure_ascii=False)
        elif v is None:
            out[key] = None
        elif isinstance(v, bool):
            out[key] = "true" if v else "false"
        else:
            out[key] = str(v)
    return out


def _matches_leaf(fmap: FieldMap, keys: set[str]) -> bool:
    """For a head cut inside the first object: every detect field's last part is a key."""
    leaves = {k for k in keys if not k.startswith("*.")}
    return all(any(stored_name(o).rsplit(".", 1)[-1] in leaves for o in opts) for opts in fmap.detect)


def choose_map(maps: tuple[FieldMap, ...], head: bytes) -> FieldMap | None:
    """The map that reads a file with this head, by its content."""
    found = head_fields(head)
    if found is None:
        return None
    fmt, names = found
    chosen = best_map(maps, names, fmt)
    if chosen is None and fmt == "json" and any(n.startswith("*.") for n in names):
        chosen = next((m for m in maps if "json" in m.formats and m.detect and _matches_leaf(m, names)), None)
    return chosen


class MappedSource(Source):
    """Reads a CSV or JSON-lines export through the field map its content matches."""

    kind = "export"

    def __init__(self, keep: dict[str, set[str] | None] | None = None, maps: tuple[FieldMap, ...] = ()) -> None:
        super().__init__(keep)
        self.maps = maps or builtin_maps()

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        return choose_map(builtin_maps(), head) is not None

    def claims(self, head: bytes) -> bool:
        """Does one of this source's maps (a user's, with `--map`) read a file with this head?"""
        return choose_map(self.maps, head) is not None

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        head = stream.read(1 << 16)
        fmap = choose_map(self.maps, head)
        stream = again(head, stream)
        if fmap is None:
            info.errors.append((None, "no field map reads this export: not parsed"))
            return
        fam = family(fmap.family)
        info.table = fam.table
        info.log_type = f"{fmap.title} (field map {fmap.name})"
        info.notes.append(f"read through field map {fmap.describe()}")
        if fmap.note:
            info.notes.append(f"field map {fmap.name}: {fmap.note}")
        fmt = head_fields(head)
        reader = self._csv if fmt and fmt[0] == "csv" else self._json
        dropped = 0
        try:
            for rows in reader(stream, info, hasher, fmap):
                mapped, lost = apply_map(rows, fmap, fam.empty_values)
                dropped += lost
                if mapped.num_rows:
                    info.records += mapped.num_rows
                    yield fam.table, mapped
        finally:
            if dropped:
                info.notes.append(f"{dropped:,} record(s) hold none of the mapped fields: skipped")

    @staticmethod
    def _csv(stream: BinaryIO, info: ArtifactInfo, hasher: object, fmap: FieldMap) -> Iterator[pa.Table]:
        state = ReadState()
        state.errors, state.notes = info.errors, info.notes
        by_position, told = (safe_names(list(fmap.fields)) if fmap.fields else []), False
        try:
            for raw in split_rows(stream, EXCHANGE_CSV, state, hasher):
                if len(raw.fields) > MAX_FIELDS:  # a hostile header must not widen the family's table
                    info.errors.append(
                        (raw.first_line, f"header of {len(raw.fields):,} columns: the rows are not read")
                    )
                    return
                info.runs.append((raw.first_line, raw.offset))
                if fmap.fields:  # the map's own field list, by position: the header names the rows wrongly
                    if not told:
                        told = True
                        info.notes.append(
                            f"rows bound by position to field map {fmap.name}'s {len(by_position)} fields "
                            f"(the header names {len(raw.fields)})"
                        )
                    raw = replace(raw, fields=by_position)
                table, _ = parse_batch([raw])
                yield table
        finally:
            info.directives = state.seen_directives

    @staticmethod
    def _json(stream: BinaryIO, info: ArtifactInfo, hasher: object, fmap: FieldMap) -> Iterator[pa.Table]:
        state = ReadState()
        state.errors, state.notes = info.errors, info.notes  # a NUL run, a cut last line: said as they are met
        for chunk, first_line, _, offset in iter_lines_chunks(stream, state, hasher):
            info.runs.append((first_line, offset))
            table = _fast_json(chunk, first_line)
            if table is None:
                table = _slow_json(chunk, first_line, info)
            if table is not None and table.num_rows:
                yield _unwrap(table, fmap.root)


def _line_starts(chunk: bytes, first_line: int) -> np.ndarray:
    """The line number of every line of `chunk` that holds more than blanks."""
    raw = np.frombuffer(chunk, np.uint8)
    ends = np.flatnonzero(raw == 10)
    if not chunk.endswith(b"\n"):
        ends = np.append(ends, len(raw))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.array([], np.int64)
    width = ends - starts
    last = np.clip(starts + np.maximum(width - 1, 0), 0, max(len(raw) - 1, 0))
    blank = (width == 0) | ((width == 1) & (raw[last] == 13)) if len(raw) else width == 0
    return np.flatnonzero(~blank).astype(np.int64) + first_line


def _fast_json(chunk: bytes, first_line: int) -> pa.Table | None:
    """One pyarrow call for a chunk of well-formed JSON lines; None when anything is unusual (mixed
    types, framing, a bad line), which the slow path then reads line by line."""
    if chunk.lstrip()[:1] != b"{":
        return None
    try:
        table = pajson.read_json(
            io.BytesIO(chunk),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(chunk) + 1),
            parse_options=pajson.ParseOptions(newlines_in_values=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    for _ in range(MAX_DEPTH):
        if not any(pa.types.is_struct(f.type) for f in table.schema):
            break
        table = table.flatten()
    if table.num_columns > MAX_FIELDS or any(pa.types.is_struct(f.type) for f in table.schema):
        return None
    lines = _line_starts(chunk, first_line)
    if len(lines) != table.num_rows:
        return None
    return table.append_column("_line", pa.array(lines, pa.int64()))


def _slow_json(chunk: bytes, first_line: int, info: ArtifactInfo) -> pa.Table | None:
    """Line by line: JSON-array framing (`[`, `,`, `]`) tolerated; bad lines counted as errors."""
    columns: dict[str, list[Any]] = {}
    lines: list[int] = []
    bad: list[int] = []
    for i, raw in enumerate(chunk.split(b"\n")):
        text = raw.strip().lstrip(b"[").rstrip(b",]").strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            bad.append(first_line + i)
            continue
        if not isinstance(obj, dict):
            bad.append(first_line + i)
            continue
        flat = flatten(obj)
        if len(flat) > MAX_FIELDS:
            bad.append(first_line + i)
            continue
        n = len(lines)
        for k, v in flat.items():
            col = columns.get(k)
            if col is None:
                if len(columns) >= MAX_FIELDS:
                    continue
                col = columns[k] = [None] * n
            col.append(v)
        lines.append(first_line + i)
        for col in columns.values():
            if len(col) < n + 1:
                col.append(None)
    if bad:
        info.errors.append((bad[0], f"{len(bad):,} line(s) that are not JSON objects skipped (first at line {bad[0]})"))
    if not lines:
        return None
    arrays = {k: pa.array(v, pa.string()) for k, v in columns.items()}
    arrays["_line"] = pa.array(lines, pa.int64())
    return pa.table(arrays)


def _unwrap(table: pa.Table, root: str | None) -> pa.Table:
    """Columns under the map's wrapper key (and Elastic's `_source`) named without it."""
    prefixes = tuple(f"{r}." for r in {root, "_source"} if r)
    names = [
        n[len(p) :] if (p := next((p for p in prefixes if n.startswith(p)), "")) else n for n in table.column_names
    ]
    if names == table.column_names:
        return table
    seen: set[str] = set()
    keep = []
    for i, n in enumerate(names):  # a wrapped name wins over the same name outside the wrapper
        if n.lower() not in seen:
            seen.add(n.lower())
            keep.append(i)
    return pa.Table.from_arrays([table.column(i) for i in keep], names=[names[i] for i in keep])
