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

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exhunt import safe_yaml
from exhunt.families import FAMILIES, Family, family, for_log_type
from exhunt.sources.base import ArtifactInfo, Replay, Source, text_head
from exhunt.sources.delimited import (
    W3C,
    DelimitedFormat,
    RawRows,
    ReadState,
    parse_batch,
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
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_TIME = r"^\d{2}:\d{2}:\d{2}$"
_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"


@cache
def default_fields() -> dict[str, dict[str, list[str]]]:
    """{"iis": {set name: fields}, "exchange": {family name: fields}} from `default_fields.yaml`."""
    text = (resources.files("exhunt.sources") / "default_fields.yaml").read_text("utf-8")
    return safe_yaml.load(text)


def _data_lines(head: bytes) -> list[str]:
    """The head's complete, non-blank lines that are not `#` directives."""
    lines = text_head(head).split("\n")
    if len(head) >= 4096:  # the last line may be cut by the head's end
        lines = lines[:-1]
    return [ln.rstrip("\r") for ln in lines if ln.strip() and not ln.startswith("#")]


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


def _exchange_family(head: bytes, path: str) -> Family | None:
    """The family of an Exchange CSV fragment without `#Fields`, if exhunt knows its columns."""
    text = text_head(head)
    if "#Fields:" in text:
        return None
    lines = _data_lines(head)
    if not lines or not _EXCHANGE_ROW.match(lines[0]):
        return None
    log_type = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("#Log-type:")), None)
    if log_type is None and not text.startswith("#Software: Microsoft Exchange"):
        low = path.lower()
        if not any(part in low for f in FAMILIES if f.kind == "log" for part in f.folders):
            return None
    fam = for_log_type(log_type, path)
    return fam if fam.name in default_fields()["exchange"] else None


class _FragmentSource(Source):
    """Shared reading: split with a preset field list, keep the rows that look like log rows."""

    fmt: DelimitedFormat
    row_pattern: str

    def _segments(self, raw: RawRows, info: ArtifactInfo) -> list[RawRows]:
        """The run as parsed: subclasses may split it where the field list changes."""
        return [raw]

    def _rows(
        self, stream: BinaryIO, info: ArtifactInfo, hasher: object, fields: list[str], fam: Family
    ) -> Iterator[tuple[str, pa.Table]]:
        state = ReadState(fields=fields)
        state.errors, state.notes = info.errors, info.notes
        self.skipped: list[int] = []
        try:
            for whole in split_rows(stream, self.fmt, state, hasher):
                for raw in self._segments(whole, info) if whole.fields is fields else [whole]:
                    info.runs.append((raw.first_line, raw.offset))
                    table, _ = parse_batch([raw])
                    ok = pc.fill_null(pc.match_substring_regex(table.column(0), self.row_pattern), False)
                    if self.row_pattern == _DATE and "time" in table.column_names:
                        ok = pc.and_(ok, pc.fill_null(pc.match_substring_regex(table.column("time"), _TIME), False))
                    if not pc.all(ok).as_py():
                        self.skipped.extend(table.column("_line").filter(pc.invert(ok)).to_pylist())
                        table = table.filter(ok)
                    if table.num_rows:
                        info.records += table.num_rows
                        yield fam.table, table
        finally:
            info.directives = state.seen_directives
            notes = [ln for ln, key, _ in state.seen_directives if key.lower() not in KNOWN_DIRECTIVES]
            skipped = sorted(self.skipped + notes)
            if skipped:
                shown = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
                info.notes.append(
                    f"{len(skipped):,} line(s) that are not log rows (separators, notes) skipped: {shown}"
                )


class HeaderlessW3CSource(_FragmentSource):
    """IIS W3C lines without a `#Fields` line. The field set is inferred for each stretch of lines
    with one field count, so an excerpt across a logging change (fields added) binds both parts."""

    kind = "iis-w3c-headerless"
    fmt = W3C
    row_pattern = _DATE

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        if "#Fields:" in text_head(head):
            return False
        return infer_iis_fields(_data_lines(head)) is not None

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        head = stream.read(1 << 16)
        guess = infer_iis_fields(_data_lines(head))
        stream = Replay(head, stream)
        fam = family("iis")
        info.table = fam.table
        if guess is None:
            info.errors.append((None, "IIS lines without #Fields whose fields could not be inferred: not parsed"))
            return
        self.by_width: dict[int, Inferred | None] = {len(guess.fields): guess}
        self.told: set[str] = set()
        info.log_type = f"IIS W3C, fields inferred ({guess.name}, {len(guess.fields)} fields)"
        yield from self._rows(stream, info, hasher, guess.fields, fam)

    def _segments(self, raw: RawRows, info: ArtifactInfo) -> list[RawRows]:
        data = np.frombuffer(raw.data, np.uint8)
        ends = np.flatnonzero(data == 10)
        starts = np.concatenate(([0], ends[:-1] + 1))
        widths = np.bincount(np.searchsorted(ends, np.flatnonzero(data == 32)), minlength=len(ends))[: len(ends)] + 1
        cuts = [0, *(np.flatnonzero(np.diff(widths)) + 1).tolist(), len(ends)]
        out = []
        for a, b in pairwise(cuts):
            width = int(widths[a])
            if width not in self.by_width:
                sample = bytes(raw.data[starts[a] : ends[min(b, a + SAMPLE_LINES) - 1]]).decode("utf-8", "replace")
                self.by_width[width] = infer_iis_fields(sample.split("\n"))
            guess = self.by_width[width]
            if guess is None:  # separators, notes, or a layout exhunt does not know
                lines = range(raw.first_line + a, raw.first_line + b)
                text = bytes(raw.data[starts[a] : starts[a] + 200]).decode("utf-8", "replace")
                if _W3C_ROW.match(text):
                    info.errors.append(
                        (lines[0], f"{len(lines):,} IIS line(s) of {width} fields fit no known field set: not read")
                    )
                else:
                    self.skipped.extend(lines)
                continue
            if guess.name not in self.told:
                self.told.add(guess.name)
                info.notes.append(
                    f"no #Fields line: fields inferred from the shape of the lines (from line {raw.first_line + a}) "
                    f"as {guess.name}: {' '.join(guess.fields)}"
                )
            out.append(
                RawRows(
                    raw.data[starts[a] : ends[b - 1] + 1],
                    raw.first_line + a,
                    raw.offset + int(starts[a]),
                    b - a,
                    guess.fields,
                    raw.directives,
                    raw.fmt,
                    raw.errors,
                )
            )
        return out


class HeaderlessExchangeSource(_FragmentSource):
    """Exchange LogSchema CSV logs whose `#Fields` line is missing or replaced by a note."""

    kind = "exchange-csv-headerless"
    fmt = HEADERLESS_CSV
    row_pattern = _ISO

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        return _exchange_family(head, path) is not None

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        head = stream.read(1 << 16)
        fam = _exchange_family(head, info.path)
        stream = Replay(head, stream)
        if fam is None:
            info.errors.append((None, "Exchange log without #Fields of an unknown type: not parsed"))
            return
        fields = list(default_fields()["exchange"][fam.name])
        widest = max((len(split_csv_line(ln)) for ln in _data_lines(head)[:SAMPLE_LINES]), default=0)
        extra = [f"extra{i}" for i in range(1, widest - len(fields) + 1)]
        text = text_head(head)
        info.table = fam.table
        info.version = next(
            (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("#Version:")), None
        )
        info.log_type = f"{fam.title}, fields inferred (default {fam.name} list, {len(fields)} columns)"
        info.notes.append(
            f"no #Fields line: columns bound to exhunt's default {fam.name} list of {len(fields)} columns"
            + (f" plus {len(extra)} unnamed ones (extra1..)" if extra else "")
            + "; rows with fewer columns are padded"
        )
        yield from self._rows(stream, info, hasher, fields + extra, fam)
