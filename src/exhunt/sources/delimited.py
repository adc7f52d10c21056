"""Streaming reader for `#`-directive delimited logs: IIS W3C (space) and Exchange LogSchema (CSV).

Both formats interleave directive lines (`#Software`, `#Version`, `#Log-type`, `#Date`, `#Fields`) with
data rows, and a `#Fields` line may reappear mid-file with a different column list. The file is read
in bounded chunks cut at line ends and split into directives and runs of data lines (`split_rows`);
`parse_batch` then parses runs that share a `#Fields` list, from one file or many, in one call of
pyarrow's C++ CSV reader, so memory stays bounded and the hot loop is not Python. Every row keeps its
1-based physical line number (`_line`).

Quirks handled: UTF-8 BOM, CRLF, an optional bare CSV header row before the directives (Exchange),
header-looking rows repeated inside data, ragged rows (padded or cut to the field count), quoted
values (CSV), a truncated last line, invalid UTF-8 (decoded with backslash escapes), empty lines and
lines longer than the chunk (read whole up to a cap, else skipped with an error).
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

CHUNK_BYTES = 8 << 20  # measured: 32 MiB chunks cost 2.4x the system time (page faults)
MAX_LINE_BYTES = 64 << 20
# A `#Fields` list longer than this is refused with the lines under it (real logs name up to ~120
# fields): one hostile header must not widen the family's table past what the store can hold.
MAX_FIELDS = 1024
BOM = b"\xef\xbb\xbf"
NUL_ERROR = "NUL bytes in the data"


@dataclass
class DelimitedFormat:
    """How one family of `#`-directive logs is split into fields."""

    delimiter: str
    quoting: bool
    null_values: list[str]
    bare_header: bool  # a plain header row may stand before the directives
    split_fields: Callable[[str], list[str]]


@dataclass
class RawRows:
    """Data lines under one `#Fields` list, not parsed yet. `parse_batch` parses many of them (from
    many files) in one call: one pyarrow call per small file cost more than the parsing itself."""

    data: bytes | memoryview  # whole lines; the last one ends in a line break too
    first_line: int  # 1-based physical line number of the first line
    offset: int  # byte offset of the first line in the file (evidence seeks there)
    n_lines: int
    fields: list[str]
    directives: dict[str, str]  # the directives in force (`Log-type`, `Version`, ...)
    fmt: DelimitedFormat
    errors: list[tuple[int | None, str]]  # the artifact's error list: problems with these lines go there


@dataclass
class ReadState:
    fields: list[str] | None = None
    directives: dict[str, str] = field(default_factory=dict)
    seen_directives: list[tuple[int, str, str]] = field(default_factory=list)  # (line, key, value)
    errors: list[tuple[int | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # remarks that lose no record


def safe_names(names: list[str]) -> list[str]:
    """Column names for one `#Fields` list, which the log's writer (or an attacker) chose.

    Names starting with `_` are exhunt's provenance columns (`_line`, `_artifact`, `_ts`), and `rowid`
    is the store's row id, so a field spelled like one gets a `field` prefix; blank names become
    `blank`; duplicates (compared without case, as DuckDB does) are numbered.
    """
    return list(_safe_names(tuple(names)))


@functools.lru_cache(maxsize=256)
def _safe_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """`safe_names`, once per distinct list: thousands of small files repeat the same few (0.4 s on 1 GB)."""
    used: set[str] = set()
    out = []
    for name in names:
        name = name or "blank"
        if name.startswith("_") or name.lower() == "rowid":
            name = "field" + ("" if name.startswith("_") else "_") + name
        base, n = name, 0
        while name.lower() in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name.lower())
        out.append(name)
    return tuple(out)


def column_names(fields_value: str) -> list[str]:
    """The columns a `#Fields:` value names (comma-separated in Exchange logs, spaces in W3C), made
    safe as above. The reader and the evidence builder both bind rows through this one function."""
    return list(_column_names(fields_value))


@functools.lru_cache(maxsize=256)
def _column_names(fields_value: str) -> tuple[str, ...]:
    """`column_names`, once per distinct value: each of thousands of small logs repeats its family's."""
    names = fields_value.split(",") if "," in fields_value else fields_value.split()
    return _safe_names(tuple(n.strip() for n in names))


@functools.lru_cache(maxsize=256)
def _bare_header_names(head: str, split: Callable[[str], list[str]]) -> tuple[str, ...]:
    """The columns of a header line without `#Fields:` (the first line of a raw HttpProxy log), once
    per distinct line."""
    return _safe_names(tuple(f.strip() for f in split(head)))


def iter_lines_chunks(
    stream: BinaryIO, state: ReadState, hasher: object | None
) -> Iterator[tuple[bytes, int, int, int]]:
    """Yield (chunk, first line number, line breaks in it, byte offset of the chunk in the file); each
    chunk ends at a line end (or EOF). A stream that is a stretch of a file (`procread`) says at which
    line and offset it starts (`first_line`, `offset`); the others start at the file's beginning."""
    carry = b""
    line_no = getattr(stream, "first_line", 1)
    consumed = getattr(stream, "offset", 0)  # bytes of the file before what is read next
    first = consumed == 0  # only the file's own start may hold a BOM
    nul_seen = False
    while True:
        data = stream.read(CHUNK_BYTES)
        if hasher is not None and data:
            hasher.update(data)  # type: ignore[attr-defined]
        if not nul_seen and (k := data.find(b"\x00")) != -1:
            # NUL runs are what a damaged copy or a disk error leaves in a text log, in a header as
            # in the data: said once per file, at the line where the first one is
            nul_seen = True
            at = line_no + carry.count(b"\n") + data.count(b"\n", 0, k)
            state.errors.append((at, f"{NUL_ERROR}: the file is damaged here"))
        if not data:
            if carry:
                if carry.strip():
                    last = line_no + carry.count(b"\n")
                    state.notes.append(f"the last line (line {last}) has no line end: the file may be cut short")
                yield carry, line_no, carry.count(b"\n"), consumed - len(carry)
            return
        buf_offset = consumed - len(carry)
        consumed += len(data)
        if first:
            first = False
            if data.startswith(BOM):  # the first read: nothing is carried yet
                data, buf_offset = data[3:], buf_offset + 3
        if carry and (end := data.rfind(b"\n")) != -1:
            # the carried part line and the new data up to its last line end, in one copy
            chunk, carry = b"".join((carry, memoryview(data)[: end + 1])), data[end + 1 :]
        else:
            buf = carry + data if carry else data  # nothing carried, or no line end in the new data
            cut = buf.rfind(b"\n")
            if cut == -1:  # no line end yet: carry the part line on, unless it is past the cap
                carry = buf
                if len(buf) > MAX_LINE_BYTES:
                    state.errors.append((line_no, f"line longer than {MAX_LINE_BYTES >> 20} MiB skipped"))
                    rest, read = _past_next_line_end(stream, hasher)
                    if rest is None:
                        return
                    carry, consumed, line_no = rest, consumed + read, line_no + 1
                continue
            chunk, carry = (buf, b"") if cut == len(buf) - 1 else (buf[: cut + 1], buf[cut + 1 :])
        breaks = line_breaks(chunk)
        yield chunk, line_no, breaks, buf_offset
        line_no += breaks


def _past_next_line_end(stream: BinaryIO, hasher: object | None) -> tuple[bytes | None, int]:
    """Read on to the next line end: (what follows it in that read, or None at the end of the file;
    the bytes read)."""
    read = 0
    while more := stream.read(CHUNK_BYTES):
        read += len(more)
        if hasher is not None:
            hasher.update(more)  # type: ignore[attr-defined]
        if (nl := more.find(b"\n")) != -1:
            return more[nl + 1 :], read
    return None, read


def line_breaks(data: bytes) -> int:
    """`data.count(b"\\n")`: numpy counts a chunk 3x faster (1.1 against 3.2 ms per 8 MiB), with the
    GIL released, which `bytes.count` holds (a third of cutting 1 GB into chunks)."""
    if len(data) < 1 << 16:
        return data.count(b"\n")
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))


def split_rows(
    stream: BinaryIO, fmt: DelimitedFormat, state: ReadState, hasher: object | None = None
) -> Iterator[RawRows]:
    """Split a file into directives (kept in `state`) and runs of data lines (yielded, unparsed).
    Problems go to `state.errors`, never raised."""
    for chunk, first_line, breaks, offset in iter_lines_chunks(stream, state, hasher):
        yield from _split_chunk(chunk, first_line, breaks, offset, fmt, state)


def _directive_starts(buf: bytes) -> list[int]:
    """Offsets of the lines starting with `#`. Searching for `#` alone runs at memchr speed (it is
    rare in data); a search for a line break followed by `#` stopped at every line (12% of reading)."""
    out = [0] if buf.startswith(b"#") else []
    k = buf.find(b"#", 1)
    while k != -1:
        if buf[k - 1] == 10:
            out.append(k)
        k = buf.find(b"#", k + 1)
    return out


def _split_chunk(
    buf: bytes, first_line: int, breaks: int, offset: int, fmt: DelimitedFormat, state: ReadState
) -> Iterator[RawRows]:
    """Runs of data lines between the directives of one chunk, as views of it (no copies). `breaks`
    (the chunk's line breaks, counted once) gives the last run's line count without counting again."""
    pos, line, counted = 0, first_line, 0
    for h in _directive_starts(buf):
        if h > pos:
            n = buf.count(b"\n", pos, h)
            yield from _data_lines(buf, pos, h, n, line, offset, fmt, state)
            line, counted = line + n, counted + n
        eol = buf.find(b"\n", h)
        eol = len(buf) if eol == -1 else eol
        _directive(buf[h:eol], line, state)
        pos = eol + 1
        line, counted = line + 1, counted + 1
    if pos < len(buf):
        yield from _data_lines(buf, pos, len(buf), breaks - counted, line, offset, fmt, state)


def _directive(raw: bytes, line: int, state: ReadState) -> None:
    text = raw.decode("utf-8", "backslashreplace").rstrip("\r")
    key, _, value = text[1:].partition(":")
    key, value = key.strip(), value.strip()
    state.seen_directives.append((line, key, value))
    if key.lower() == "fields":
        state.fields = column_names(value)
        if len(state.fields) > MAX_FIELDS:
            state.errors.append(
                (
                    line,
                    f"#Fields names {len(state.fields):,} fields (limit {MAX_FIELDS:,}): the lines under it are not read",
                )
            )
            state.fields = []  # refused: its lines are counted and skipped
    else:
        state.directives[key] = value


_NOT_BLANK = re.compile(rb"\S")


def _data_lines(
    buf: bytes, start: int, end: int, breaks: int, line: int, offset: int, fmt: DelimitedFormat, state: ReadState
) -> Iterator[RawRows]:
    """The data lines in buf[start:end] (`breaks` line breaks among them) as RawRows; `offset` is the
    file offset of buf[0]."""
    if not _NOT_BLANK.search(buf, start, end):
        return
    if state.fields == []:
        n = breaks + (0 if buf.endswith(b"\n", start, end) else 1)
        state.errors.append((line, f"{n} line(s) under a refused #Fields list skipped"))
        return
    if state.fields is None:
        if not fmt.bare_header:
            n = breaks + (0 if buf.endswith(b"\n", start, end) else 1)
            state.errors.append((line, f"{n} data line(s) before any #Fields header skipped"))
            return
        eol = buf.find(b"\n", start, end)
        head = buf[start : eol if eol != -1 else end].decode("utf-8", "backslashreplace").rstrip("\r")
        state.fields = list(_bare_header_names(head, fmt.split_fields))
        if eol == -1:
            return
        start, line, breaks = eol + 1, line + 1, breaks - 1
        if not _NOT_BLANK.search(buf, start, end):
            return
    if buf.endswith(b"\n", start, end):
        data: bytes | memoryview = memoryview(buf)[start:end]
        n_lines = breaks
    else:  # a truncated last line; ending it lets runs from several files be joined
        data, n_lines = buf[start:end] + b"\n", breaks + 1
    yield RawRows(data, line, offset + start, n_lines, state.fields, dict(state.directives), fmt, state.errors)


def parse_batch(raws: list[RawRows], keep: set[str] | None = None, note: bool = True) -> tuple[pa.Table, np.ndarray]:
    """Parse runs of data lines that share one `#Fields` list in a single pyarrow call.

    Returns the rows (string columns named after the fields, plus int64 `_line`) and, for each row,
    the index of the run in `raws` it came from. `keep` may name the (lower-cased) columns to build;
    the C++ parser then skips converting the others. Header-looking rows repeated inside the data and
    empty lines are dropped; ragged rows are padded or cut to the field count.
    """
    fields, fmt = raws[0].fields, raws[0].fmt
    wanted = None if keep is None else [f for i, f in enumerate(fields) if i == 0 or f.lower() in keep]
    data = _joined(raws)
    counts = np.fromiter((r.n_lines for r in raws), np.int64, len(raws))
    run_of_line = np.repeat(np.arange(len(raws), dtype=np.int32), counts)
    starts = np.fromiter((r.first_line for r in raws), np.int64, len(raws)) - (np.cumsum(counts) - counts)
    line_of_line = np.arange(len(run_of_line), dtype=np.int64) + starts[run_of_line]

    plain = not data.size or int(data.max()) < 0x80  # most logs are ASCII, and then neither check below runs
    if note and not plain:
        _note_invalid_utf8(raws)
    parsed = _read_csv(data if plain else _valid_utf8(data.tobytes()), fields, wanted, fmt)
    if parsed is None or parsed[0].num_rows + len(parsed[1]) != len(run_of_line):
        # a quoted value spans lines (or the C++ parser gave up): parse each run alone, exactly
        if len(raws) > 1:
            parts = [parse_batch([r], keep, note=False) for r in raws]
            return (
                pa.concat_tables([t for t, _ in parts]),
                np.concatenate([np.full(len(idx), i, np.int32) for i, (_, idx) in enumerate(parts)]),
            )
        if parsed is None:
            raws[0].errors.append(
                (raws[0].first_line, "rows could not be parsed by the fast reader; using the slow path")
            )
        table = _slow_rows(data.tobytes(), raws[0].first_line, fields, fmt).select([*(wanted or fields), "_line"])
        table = _drop_repeated_headers(table, fields[0])
        return table, np.zeros(table.num_rows, np.int32)

    table, bad = parsed
    parsed_whole = np.ones(len(run_of_line), dtype=bool)
    parsed_whole[np.array([num for num, _ in bad], dtype=np.int64) - 1] = False
    table = table.append_column("_row", pa.array(np.flatnonzero(parsed_whole), pa.int64()))
    if bad:  # rows with another field count: padded or cut, on their own line
        split = fmt.split_fields
        extra = _rows_to_table(
            [(num - 1, fit_values(split(text), fields)) for num, text in bad], fields, fmt.null_values
        )
        extra = extra.rename_columns([*fields, "_row"]).select(table.column_names)
        table = pa.concat_tables([table, extra]).sort_by("_row")
    table = _drop_repeated_headers(_drop_empty_lines(table, data), fields[0])
    rows = table.column("_row").to_numpy()
    table = table.drop_columns(["_row"]).append_column("_line", pa.array(line_of_line[rows], pa.int64()))
    return table, run_of_line[rows]


def _joined(raws: list[RawRows]) -> np.ndarray:
    """The runs' lines as one array of bytes: a single run as it lies in its chunk (no copy), several
    copied together by numpy, which lets go of the GIL while it copies (`b"".join` held it through
    the copy and the page faults of each new buffer: 36% of the reader threads' time with the GIL on
    1 GB of logs, which kept a second reader waiting)."""
    if len(raws) == 1:
        return np.frombuffer(raws[0].data, np.uint8)
    return np.concatenate([np.frombuffer(r.data, np.uint8) for r in raws])


def _read_csv(
    data: bytes | np.ndarray, fields: list[str], wanted: list[str] | None, fmt: DelimitedFormat
) -> tuple[pa.Table, list[tuple[int, str]]] | None:
    """One pyarrow parse of `data` (valid UTF-8: see `_valid_utf8`); rows with the wrong field count
    come back as (1-based line, text)."""
    bad: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append((row.number or 0, row.text))
        return "skip"

    def parse(payload: bytes | np.ndarray) -> pa.Table:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(payload)),
            read_options=pacsv.ReadOptions(
                column_names=fields, use_threads=False, block_size=max(len(payload) + 1, 1 << 16)
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=fmt.delimiter,
                quote_char='"' if fmt.quoting else False,
                double_quote=fmt.quoting,
                newlines_in_values=False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(fields, pa.binary()),
                include_columns=wanted,
                null_values=fmt.null_values,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        # parsed as binary and viewed as text without copying: the whole payload is valid UTF-8 and
        # the separators are ASCII, so every field is (pyarrow's own check cost 6% of reading)
        return pa.Table.from_arrays(
            [pa.chunked_array([c.view(pa.string()) for c in col.chunks], pa.string()) for col in table.columns],
            names=table.column_names,
        )

    try:
        return parse(data), bad
    except pa.ArrowInvalid:
        return None


def _note_invalid_utf8(raws: list[RawRows]) -> None:
    """Name the runs whose bytes are not UTF-8 (junk written over a log, or another encoding); called
    for batches that are not all ASCII."""
    for r in raws:
        chunk = bytes(r.data)
        if chunk.isascii():
            continue
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = r.first_line + chunk.count(b"\n", 0, exc.start)
            r.errors.append((line, "bytes that are not UTF-8 (damaged, or another encoding): kept as \\x escapes"))


def _valid_utf8(data: bytes) -> bytes:
    """`data` (not all ASCII: the caller checked) with invalid UTF-8 bytes written as backslash
    escapes. Checked before parsing, since pyarrow cannot hand a row with such bytes to the
    invalid-row handler."""
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        return data.decode("utf-8", "backslashreplace").encode("utf-8")


def _drop_repeated_headers(table: pa.Table, name: str) -> pa.Table:
    """Drop header rows repeated inside the data (their first field is the first field's name)."""
    header = pc.fill_null(pc.equal(table.column(0), name), False)
    return table.filter(pc.invert(header)) if pc.any(header).as_py() else table


def _drop_empty_lines(table: pa.Table, raw: np.ndarray) -> pa.Table:
    """Drop the rows pyarrow makes of empty lines. They have a null first field, so only rows with one
    are looked up in the bytes (a byte search for empty lines over every batch cost 13% of reading)."""
    candidates = pc.is_null(table.column(0))
    if not pc.any(candidates).as_py():
        return table
    rows = table.column("_row").filter(candidates).to_numpy()
    ends = np.flatnonzero(raw == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))[rows]
    width = ends[rows] - starts
    empty = rows[(width == 0) | ((width == 1) & (raw[starts] == 13))]
    return table.filter(pc.invert(pc.is_in(table.column("_row"), pa.array(empty, pa.int64()))))


def _slow_rows(data: bytes, line: int, fields: list[str], fmt: DelimitedFormat) -> pa.Table:
    text = data.decode("utf-8", "backslashreplace")
    rows: list[tuple[int, list[str]]] = []
    if fmt.quoting:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter)
        start = 1
        for rec in reader:
            if rec:  # not an empty line
                rows.append((line + start - 1, rec))
            start = reader.line_num + 1
    else:
        for i, raw in enumerate(text.split("\n")):
            raw = raw.rstrip("\r")
            if raw:
                rows.append((line + i, fit_values(fmt.split_fields(raw), fields)))
    return _rows_to_table(rows, fields, fmt.null_values)


def _rows_to_table(rows: list[tuple[int, list[str]]], fields: list[str], nulls: list[str]) -> pa.Table:
    n = len(fields)
    cols: list[list[str | None]] = [[] for _ in range(n)]
    for _, values in rows:
        values = values[:n] + [""] * (n - len(values))
        for i, v in enumerate(values):
            cols[i].append(None if v in nulls else v)
    arrays = [pa.array(c, pa.string()) for c in cols]
    arrays.append(pa.array([ln for ln, _ in rows], pa.int64()))
    return pa.Table.from_arrays(arrays, names=[*fields, "_line"])


def split_csv_line(text: str) -> list[str]:
    """Split one CSV line the way the Exchange log writer quotes it. A stray carriage return (a
    damaged file) is kept, written as `\\r`, instead of failing the line."""
    try:
        return next(csv.reader([text]), [])
    except csv.Error:
        return next(csv.reader([text.replace("\r", "\\r")]), [])


_UA = "cs(User-Agent)"


def fit_values(values: list[str], names: list[str]) -> list[str]:
    """A W3C row with more values than fields, as hand-copied excerpts and some exporters write them:
    the user agent is the one default field whose spaces they leave unencoded, so the surplus is
    joined back into it (with IIS's own `+`), the fields before it read from the start and those after
    it from the end. Any other row is returned as it is (cut or padded later)."""
    surplus = len(values) - len(names)
    if surplus <= 0 or _UA not in names:
        return values
    k = names.index(_UA)
    return [*values[:k], "+".join(values[k : k + surplus + 1]), *values[k + surplus + 1 :]]


def split_w3c_line(text: str) -> list[str]:
    """Split one W3C line: single spaces, no quoting."""
    return text.rstrip("\r").split(" ")


EXCHANGE_CSV = DelimitedFormat(
    delimiter=",", quoting=True, null_values=[""], bare_header=True, split_fields=split_csv_line
)
W3C = DelimitedFormat(
    delimiter=" ", quoting=False, null_values=["-", ""], bare_header=False, split_fields=split_w3c_line
)
