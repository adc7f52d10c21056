"""Log fragments that lost their `#Fields` line: IIS W3C excerpts and Exchange CSV logs.

An IIS excerpt (lines copied out of a log, a file whose header was cut) gets the default IIS field
set (`default_fields.yaml`) whose field count matches its lines and whose values fit each field's
shape (date, time, addresses, method, path, port, status). An Exchange log that keeps its
`#Log-type` (or lies in its family's folder) but whose `#Fields` line is missing or was replaced by a
note gets its family's default column list, widened when rows are longer. Lines that are plainly
not log rows (separators, notes, banners) are skipped and counted in the file's notes, and the
artifact's log type says the field list was inferred, which coverage repeats.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from itertools import pairwise
from typing import BinaryIO

import numpy as np

from exhunt import safe_yaml
from exhunt.families import FAMILIES, Family, family, for_log_type
from exhunt.sources.base import (  # HEAD_BYTES: the reader's, so the sniffing's work is reused
    HEAD_BYTES,
    ArtifactInfo,
    Source,
    again,
    text_head,
)
from exhunt.sources.delimited import (
    W3C,
    DelimitedFormat,
    RawRows,
    ReadState,
    split_csv_line,
    split_rows,
)

SAMPLE_LINES = 40
MIN_SCORE = 0.9  # share of checked fields whose values fit, over the sampled lines
KNOWN_DIRECTIVES = {"software", "version", "date", "fields", "log-type", "start-date", "end-date", "remark"}
HEADERLESS_CSV = DelimitedFormat(
    delimiter=",", quoting=True, null_values=[""], bare_header=False, split_fields=split_csv_line
)

_W3C_ROW = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S")
_EXCHANGE_ROW = re.compile(r'^"?\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}')
_IP = re.compile(r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.%a-z]*)$")
_SHAPES: dict[str, re.Pattern[str]] = {
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "time": re.compile(r"^\d{2}:\d{2}:\d{2}$"),
    "s-ip": _IP,
    "c-ip": _IP,
    "cs-method": re.compile(r"^(?:[A-Z][A-Z_-]{1,19}|-)$"),
    "cs-uri-stem": re.compile(r"^(?:/|-$)"),
    "s-port": re.compile(r"^\d{1,5}$"),
    "sc-status": re.compile(r"^\d{3}$"),
    "sc-substatus": re.compile(r"^\d{1,10}$"),
    "sc-win32-status": re.compile(r"^\d{1,10}$"),
    "time-taken": re.compile(r"^\d{1,12}$"),
    "sc-bytes": re.compile(r"^\d{1,15}$"),
    "cs-bytes": re.compile(r"^\d{1,15}$"),
    "cs-version": re.compile(r"^(?:HTTP/\d(?:\.\d)?|-)$"),
}


@cache
def default_fields() -> dict[str, dict[str, list[str]]]:
    """{"iis": {set name: fields}, "exchange": {family name: fields}} from `default_fields.yaml`."""
    text = (resources.files("exhunt.sources") / "default_fields.yaml").read_text("utf-8")
    return safe_yaml.load(text)


@lru_cache(maxsize=4)  # every source's sniff looks at the same head
def _data_lines(head: bytes) -> list[str]:
    """The head's complete, non-blank lines that are not `#` directives."""
    lines = text_head(head).split("\n")
    if len(head) >= 4096:  # the last line may be cut by the head's end
        lines = lines[:-1]
    return [ln.rstrip("\r") for ln in lines if ln.strip() and not ln.startswith("#")]


def _pattern_rows(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, pattern: bytes) -> np.ndarray:
    """Which lines start with `pattern`, where `9` stands for any digit and `?` for any byte."""
    n = len(pattern)
    if not len(starts):
        return np.zeros(0, bool)
    idx = np.minimum(starts[:, None] + np.arange(n), len(data) - 1)
    block = data[idx]
    want = np.frombuffer(pattern, np.uint8)
    digit = want == ord("9")
    exact = ~digit & (want != ord("?"))
    ok = ((block >= 48) & (block <= 57) | ~digit).all(axis=1) & ((block == want) | ~exact).all(axis=1)
    return ok & ((ends - starts) >= n)


@dataclass(frozen=True)
class Inferred:
    name: str
    fields: list[str]
    score: float


def infer_iis_fields(lines: list[str]) -> Inferred | None:
    """The default IIS field set that fits these W3C lines best, or None when none fits well."""
    rows = [ln.split(" ") for ln in lines if _W3C_ROW.match(ln)][:SAMPLE_LINES]
    if not rows:
        return None
    width = Counter(len(r) for r in rows).most_common(1)[0][0]
    rows = [r for r in rows if len(r) == width]
    best: Inferred | None = None
    for name, fields in default_fields()["iis"].items():
        if len(fields) != width:
            continue
        checked = [(i, _SHAPES[f]) for i, f in enumerate(fields) if f in _SHAPES]
        fits = sum(bool(shape.match(r[i])) for r in rows for i, shape in checked)
        score = fits / (len(checked) * len(rows))
        if score >= MIN_SCORE and (best is None or score > best.score):
            best = Inferred(name, list(fields), score)
    return best


def _csv_rows(lines: list[str]) -> list[list[str]]:
    """The sample lines as CSV rows (none when the csv module refuses them). Lines without a quote,
    a NUL or a carriage return split on their commas exactly as the csv module splits them, at a
    tenth of its cost (it was about half of what a fragment file costs beyond a raw log)."""
    if not any('"' in ln or "\x00" in ln or "\r" in ln for ln in lines):
        return [ln.split(",") if ln else [] for ln in lines]
    try:
        return list(csv.reader(lines))
    except csv.Error:
        return []


def _directive(text: str, key: str) -> str | None:
    """The value of the first `#key:` line of a head."""
    m = re.search(rf"^#{key}:(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


@lru_cache(maxsize=4)
def _exchange_family(head: bytes, path: str) -> Family | None:
    """The family of an Exchange CSV fragment without `#Fields`, if exhunt knows its columns."""
    text = text_head(head)
    if "#Fields:" in text:
        return None
    lines = _data_lines(head)[:SAMPLE_LINES]
    if not lines or sum(bool(_EXCHANGE_ROW.match(ln)) for ln in lines) * 2 < len(lines):
        return None  # most lines are rows: a note where `#Fields` was is skipped, not a reason to give up
    log_type = _directive(text, "Log-type")
    if log_type is None and not text.startswith("#Software: Microsoft Exchange"):
        low = path.lower()
        if not any(part in low for f in FAMILIES if f.kind == "log" for part in f.folders):
            return None
    fam = for_log_type(log_type, path)
    return fam if fam.name in default_fields()["exchange"] else None


# Exchange columns whose values have a shape of their own: an excerpt that kept only some columns
# (the rest cut away by whoever quoted it) gets these bound by what its values look like.
_EXCHANGE_SHAPES: dict[str, re.Pattern[str]] = {
    "EventData": re.compile(r"^'?S:[A-Za-z]+="),  # ECP Server: S:CMD=...;S:EX=...
}


def _bind_by_shape(fields: list[str], default: list[str], rows: list[list[str]]) -> list[tuple[int, str]]:
    """Rows shorter than the default list: a column (not the first, the time) whose values fit the
    shape of a default column it was not bound to is bound to that one instead. Returns the moves."""
    moved: list[tuple[int, str]] = []
    shapes = {name: shape for name, shape in _EXCHANGE_SHAPES.items() if name in default and name not in fields}
    if not shapes:  # most families have no such column: thousands of small files skip the values
        return moved
    for i in range(1, min(len(fields), len(default))):
        values = [r[i] for r in rows if r[i]]
        for name, shape in shapes.items():
            fits = sum(bool(shape.match(v)) for v in values) / len(values) if values else 0.0
            if name not in fields and fits >= MIN_SCORE:
                fields[i] = name
                moved.append((i, name))
    return moved


class _FragmentSource(Source):
    """Shared reading: lines split with a preset (or inferred) field list and handed on unparsed,
    so the reader parses fragments in batches like any log; lines that are not log rows are cut out
    and counted."""

    fmt: DelimitedFormat
    every_line_a_row: re.Pattern[bytes] | None = None  # finds a line that is not a row of the preset list

    @staticmethod
    def _row_starts(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Which lines begin like a log row of this format."""
        raise NotImplementedError

    def _fields_for(self, width: int, raw: RawRows, a: int, b: int, info: ArtifactInfo) -> list[str] | None:
        """The field list of lines a..b of `raw` (all of `width` fields), or None to skip them."""
        return self.fields

    def _keys(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """One key per line: lines with equal keys share a field list; -1 is not a log row."""
        return np.where(self._row_starts(data, starts, ends), 0, -1)

    def _rows(
        self, stream: BinaryIO, info: ArtifactInfo, hasher: object, fields: list[str], fam: Family
    ) -> Iterator[tuple[str, RawRows]]:
        state = ReadState(fields=fields)
        state.errors, state.notes = info.errors, info.notes
        self.fields = fields
        skipped: list[int] = []
        try:
            for whole in split_rows(stream, self.fmt, state, hasher):
                if whole.fields is not fields:  # a real #Fields line further down: bound by it
                    yield fam.table, whole
                    continue
                for raw in self._segments(whole, info, skipped):
                    yield fam.table, raw
        finally:
            info.directives = state.seen_directives
            notes = [ln for ln, key, _ in state.seen_directives if key.lower() not in KNOWN_DIRECTIVES]
            skipped = sorted(skipped + notes)
            if skipped:
                shown = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
                info.notes.append(
                    f"{len(skipped):,} line(s) that are not log rows (separators, notes) skipped: {shown}"
                )

    def _segments(self, raw: RawRows, info: ArtifactInfo, skipped: list[int]) -> list[RawRows]:
        """The run cut into stretches of log rows with one field list each (no copies)."""
        rx = self.every_line_a_row
        if rx is not None and rx.match(b"\n" + bytes(raw.data[:24])) is None and rx.search(raw.data[:-1]) is None:
            return [raw]  # the common case, checked by one scan of the bytes (no copy)
        data = np.frombuffer(raw.data, np.uint8)
        ends = np.flatnonzero(data == 10)
        starts = np.concatenate(([0], ends[:-1] + 1))
        keys = self._keys(data, starts, ends)
        if len(keys) and (keys == keys[0]).all() and keys[0] == 0:
            return [raw]  # the common case: every line a row of the preset list
        cuts = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), len(keys)]
        out = []
        for a, b in pairwise(cuts):
            if keys[a] < 0:
                width = ends[a:b] - starts[a:b]
                blank = (width == 0) | ((width == 1) & (data[np.minimum(starts[a:b], len(data) - 1)] == 13))
                skipped.extend((np.flatnonzero(~blank) + raw.first_line + a).tolist())
                continue
            fields = self._fields_for(int(keys[a]), raw, a, b, info)
            if fields is None:
                continue
            out.append(
                RawRows(
                    raw.data[int(starts[a]) : int(ends[b - 1]) + 1],
                    raw.first_line + a,
                    raw.offset + int(starts[a]),
                    b - a,
                    fields,
                    raw.directives,
                    raw.fmt,
                    raw.errors,
                )
            )
        return out


class HeaderlessW3CSource(_FragmentSource):
    """IIS W3C lines without a `#Fields` line. The field set is inferred for each stretch of lines
    with one field count, so an excerpt across a logging change (fields added) binds both parts."""

    kind = "iis-w3c-headerless"
    fmt = W3C

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        if "#Fields:" in text_head(head):
            return False
        return infer_iis_fields(_data_lines(head)) is not None

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, RawRows]]:
        head = stream.read(HEAD_BYTES)
        guess = infer_iis_fields(_data_lines(head))
        stream = again(head, stream)
        fam = family("iis")
        info.table = fam.table
        if guess is None:
            info.errors.append((None, "IIS lines without #Fields whose fields could not be inferred: not parsed"))
            return
        self.by_width: dict[int, Inferred | None] = {len(guess.fields): guess}
        self.told: set[str] = set()
        info.log_type = f"IIS W3C, fields inferred ({guess.name}, {len(guess.fields)} fields)"
        yield from self._rows(stream, info, hasher, guess.fields, fam)

    @staticmethod
    def _row_starts(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """`YYYY-MM-DD hh:mm:ss ` at the start of the line."""
        return _pattern_rows(data, starts, ends, b"9999-99-99 99:99:99 ")

    def _keys(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        # spaces before each line end, differenced: a search per line, not one per space (2.5x faster)
        widths = np.diff(np.searchsorted(np.flatnonzero(data == 32), ends), prepend=0) + 1
        widths = np.where(self._row_starts(data, starts, ends), widths, -1)
        if len(widths) and (widths == len(self.fields)).all():
            return np.zeros(len(widths), np.int64)  # one stretch of the inferred list
        return widths

    def _fields_for(self, width: int, raw: RawRows, a: int, b: int, info: ArtifactInfo) -> list[str] | None:
        if width == 0:
            width = len(self.fields)
        if width not in self.by_width:
            data = np.frombuffer(raw.data, np.uint8)
            ends = np.flatnonzero(data == 10)
            first = 0 if a == 0 else int(ends[a - 1]) + 1
            sample = bytes(raw.data[first : int(ends[min(b, a + SAMPLE_LINES) - 1])]).decode("utf-8", "replace")
            self.by_width[width] = infer_iis_fields(sample.split("\n"))
        guess = self.by_width[width]
        if guess is None:
            info.errors.append(
                (raw.first_line + a, f"{b - a:,} IIS line(s) of {width} fields fit no known field set: not read")
            )
            return None
        if guess.name not in self.told:
            self.told.add(guess.name)
            info.notes.append(
                f"no #Fields line: fields inferred from the shape of the lines (from line {raw.first_line + a}) "
                f"as {guess.name}: {' '.join(guess.fields)}"
            )
        return guess.fields


class HeaderlessExchangeSource(_FragmentSource):
    """Exchange LogSchema CSV logs whose `#Fields` line is missing or replaced by a note."""

    kind = "exchange-csv-headerless"
    fmt = HEADERLESS_CSV
    every_line_a_row = re.compile(rb'\n(?!"?\d{4}-\d\d-\d\dT\d\d:\d\d)')  # a line break before a non-row

    @staticmethod
    def _row_starts(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """`YYYY-MM-DDThh:mm` (possibly quoted) at the start of the line."""
        quoted = data[np.minimum(starts, len(data) - 1)] == 34
        return _pattern_rows(data, starts + quoted, ends, b"9999-99-99T99:99")

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        return _exchange_family(head, path) is not None

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, RawRows]]:
        head = stream.read(HEAD_BYTES)
        fam = _exchange_family(head, info.path)
        stream = again(head, stream)
        if fam is None:
            info.errors.append((None, "Exchange log without #Fields of an unknown type: not parsed"))
            return
        default = list(default_fields()["exchange"][fam.name])
        rows = _csv_rows([ln for ln in _data_lines(head)[:10] if _EXCHANGE_ROW.match(ln)])
        width = Counter(len(r) for r in rows).most_common(1)[0][0] if rows else len(default)
        # an earlier CU writes a prefix of the list: bind that many columns, so its rows parse whole
        fields = default[:width] + [f"extra{i}" for i in range(1, width - len(default) + 1)]
        moved = _bind_by_shape(fields, default, [r for r in rows if len(r) == width])
        text = text_head(head)
        info.table = fam.table
        info.version = _directive(text, "Version")
        info.log_type = f"{fam.title}, fields inferred (default {fam.name} list)"
        info.notes.append(
            f"no #Fields line: columns bound to the first {min(width, len(default))} of exhunt's default {fam.name} "
            f"list of {len(default)} columns"
            + (f" plus {width - len(default)} unnamed ones (extra1..)" if width > len(default) else "")
            + "".join(f"; column {i + 1} bound to {name} by the shape of its values" for i, name in moved)
            + "; rows with another column count are padded or cut"
        )
        yield from self._rows(stream, info, hasher, fields, fam)
