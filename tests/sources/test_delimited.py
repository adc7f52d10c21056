"""The shared reader for #-directive logs: every quirk of IIS W3C and Exchange CSV, with line numbers."""

from __future__ import annotations

import csv
import hashlib
import io
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from exhunt.sources import delimited
from exhunt.sources.base import ArtifactInfo
from exhunt.sources.exchange_csv import ExchangeCsvSource, table_for_log_type
from exhunt.sources.w3c import W3CSource
from tests.sources.reading import read_tables


def read_exchange(data: bytes) -> tuple[list[dict], ArtifactInfo]:
    info = ArtifactInfo("x.LOG")
    rows = []
    for _table, t in read_tables(ExchangeCsvSource(), io.BytesIO(data), info, hashlib.sha256()):
        rows.extend(t.to_pylist())
    return rows, info


def read_w3c(data: bytes) -> tuple[list[dict], ArtifactInfo]:
    info = ArtifactInfo("u_ex.log")
    rows = []
    for _table, t in read_tables(W3CSource(), io.BytesIO(data), info):
        rows.extend(t.to_pylist())
    return rows, info


HEAD = "#Software: Microsoft Exchange Server\r\n#Version: 15.01.2106.002\r\n#Log-type: HttpProxy Logs\r\n#Date: x\r\n"


def test_exchange_bare_header_bom_crlf_and_directives():
    data = ("\ufeffDateTime,RequestId,AnchorMailbox\r\n" + HEAD + "#Fields: DateTime,RequestId,AnchorMailbox\r\n"
            "2021-03-03T01:00:00.000Z,r1,SMTP:a@b\r\n").encode()  # fmt: skip
    rows, info = read_exchange(data)
    assert rows == [
        {"DateTime": "2021-03-03T01:00:00.000Z", "RequestId": "r1", "AnchorMailbox": "SMTP:a@b", "_line": 7}
    ]
    assert info.version == "15.01.2106.002"
    assert info.log_type == "HttpProxy Logs"
    assert info.table == "log_httpproxy"


def test_exchange_without_bare_header_row():
    rows, _ = read_exchange((HEAD + "#Fields: DateTime,RequestId\r\n2021,r1\r\n").encode())
    assert rows == [{"DateTime": "2021", "RequestId": "r1", "_line": 6}]


def test_exchange_quoted_values_doubled_quotes_and_repeated_header_row():
    data = (HEAD + "#Fields: A,B,C\r\n"
            '1,"x,y","say ""hi"""\r\n'
            "A,B,C\r\n"
            "2,,z\r\n").encode()  # fmt: skip
    rows, _ = read_exchange(data)
    assert [(r["A"], r["B"], r["C"], r["_line"]) for r in rows] == [("1", "x,y", 'say "hi"', 6), ("2", None, "z", 8)]


def test_exchange_ragged_rows_are_padded_or_cut_and_keep_their_lines():
    data = (HEAD + "#Fields: A,B,C\r\n1,2\r\n\r\n3,4,5,6\r\n7,8,9\r\n").encode()
    rows, _ = read_exchange(data)
    assert [(r["A"], r["B"], r["C"], r["_line"]) for r in rows] == [
        ("1", "2", None, 6),
        ("3", "4", "5", 8),
        ("7", "8", "9", 9),
    ]


def test_exchange_truncated_last_line_is_kept():
    rows, _ = read_exchange((HEAD + "#Fields: A,B,C\r\n1,2,3\r\n4,tru").encode())
    assert rows[-1] == {"A": "4", "B": "tru", "C": None, "_line": 7}


def test_exchange_fields_change_mid_file_older_build_has_fewer_columns():
    data = (HEAD + "#Fields: A,B\r\n1,2\r\n" + HEAD + "#Fields: A,B,C\r\n3,4,5\r\n").encode()
    rows, _ = read_exchange(data)
    assert rows == [{"A": "1", "B": "2", "_line": 6}, {"A": "3", "B": "4", "C": "5", "_line": 12}]


def test_quoted_newline_falls_back_to_exact_line_numbers():
    data = (HEAD + '#Fields: A,B\r\n1,"multi\r\nline"\r\n2,x\r\n').encode()
    rows, _ = read_exchange(data)
    assert [(r["A"], r["_line"]) for r in rows] == [("1", 6), ("2", 8)]
    assert rows[0]["B"] == "multi\r\nline"


def test_invalid_utf8_is_decoded_with_escapes_not_dropped():
    rows, _ = read_exchange((HEAD + "#Fields: A,B\r\n").encode() + b"1,caf\xe9\r\n2,ok\r\n")
    assert rows[0]["B"] == "caf\\xe9"
    assert rows[1]["_line"] == 7


def test_w3c_fields_repeat_mid_file_with_another_list_and_dash_is_empty():
    data = (
        b"#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n"
        b"#Fields: date time cs-method cs-uri-stem cs(User-Agent)\r\n"
        b"2021-03-03 01:00:00 POST /ecp/y.js python-requests/2.25.1\r\n"
        b"#Software: Microsoft Internet Information Services 10.0\r\n"
        b"#Fields: date time cs-method cs-uri-stem cs-host cs(User-Agent)\r\n"
        b"2021-03-03 01:00:01 GET /owa/ mail.example.org Mozilla/5.0+(Windows+NT+10.0)\r\n"
        b"2021-03-03 01:00:02 GET /owa/ - -\r\n"
    )
    rows, info = read_w3c(data)
    assert [r["_line"] for r in rows] == [4, 7, 8]
    assert "cs-host" not in rows[0] and rows[1]["cs-host"] == "mail.example.org"
    assert rows[1]["cs(User-Agent)"] == "Mozilla/5.0+(Windows+NT+10.0)"
    assert rows[2]["cs-host"] is None and rows[2]["cs(User-Agent)"] is None
    assert [k for _, k, _ in info.directives].count("Fields") == 2


def test_w3c_data_before_any_fields_is_reported():
    rows, info = read_w3c(b"garbage line\r\n#Fields: date time\r\n2021-03-03 01:00:00\r\n")
    assert [r["_line"] for r in rows] == [3]
    assert info.errors and "before any #Fields" in info.errors[0][1]


def test_chunk_boundaries_keep_line_numbers(monkeypatch):
    monkeypatch.setattr(delimited, "CHUNK_BYTES", 64)
    body = "".join(f"2021-03-03T01:00:{i % 60:02d}.000Z,r{i}\r\n" for i in range(200))
    rows, _ = read_exchange((HEAD + "#Fields: DateTime,RequestId\r\n" + body).encode())
    assert len(rows) == 200
    assert all(r["RequestId"] == f"r{r['_line'] - 6}" for r in rows)


def test_line_longer_than_the_cap_is_skipped_and_the_rest_read(monkeypatch):
    monkeypatch.setattr(delimited, "CHUNK_BYTES", 1024)
    monkeypatch.setattr(delimited, "MAX_LINE_BYTES", 4096)
    data = (HEAD + "#Fields: A,B\r\n1,x\r\n").encode() + b"2," + b"y" * 10_000 + b"\r\n3,z\r\n"
    rows, info = read_exchange(data)
    assert [(r["A"], r["_line"]) for r in rows] == [("1", 6), ("3", 8)]
    assert any("longer than" in why for _, why in info.errors)


def test_ten_megabyte_line_is_read_whole():
    data = (HEAD + "#Fields: A,B\r\n").encode() + b"1," + b"y" * (10 << 20) + b"\r\n2,z\r\n"
    rows, _ = read_exchange(data)
    assert len(rows[0]["B"]) == 10 << 20
    assert rows[1]["_line"] == 7


def test_log_type_picks_the_table():
    assert table_for_log_type("HttpProxy Logs", "x") == "log_httpproxy"
    assert table_for_log_type("ECP Server Log", "x") == "log_ecp_server"
    assert table_for_log_type(None, "V15/Logging/OABGeneratorLog/x.LOG") == "log_oab_generator"
    assert table_for_log_type("Message Tracking Log", "x") == "log_message_tracking"
    assert table_for_log_type("Some Other Log", "x") == "log_some_other_log"


cell = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=20))
def test_csv_round_trip_values_and_lines(rows):
    """Whatever the Exchange CSV writer quotes, the reader gives back the values on the right line."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for r in rows:
        writer.writerow(["x" + r[0], *r[1:]])  # first column never empty nor a header look-alike
    data = (HEAD + "#Fields: A,B,C\r\n" + buf.getvalue()).encode()
    got, _ = read_exchange(data)
    assert [(g["A"], g["B"] or "", g["C"] or "") for g in got] == [("x" + r[0], r[1], r[2]) for r in rows]
    assert [g["_line"] for g in got] == list(range(6, 6 + len(rows)))


def test_field_names_are_made_safe_and_unique():
    assert delimited.column_names("a,A,,_line,_artifact,a_1,b") == [
        "a", "A_1", "blank", "field_line", "field_artifact", "a_1_1", "b",
    ]  # fmt: skip


file_line = st.one_of(
    st.lists(cell, min_size=1, max_size=5).map(lambda vs: ",".join(f'"{v}"' if "," in v else v for v in vs)),
    st.sampled_from(["", "A,B,C", '1,"two\r\nlines",3', "1,caf\udce9,3", "x" * 300]),
)


def _exchange_file(lines: list[str], truncated: bool) -> bytes:
    body = "\r\n".join(lines) + ("" if truncated else "\r\n")
    return (HEAD + "#Fields: A,B,C\r\n" + body).encode("utf-8", "surrogateescape")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(file_line, min_size=1, max_size=8), st.booleans()), min_size=1, max_size=5))
def test_runs_parsed_together_give_the_same_rows_as_parsed_alone(files):
    """The scan parses runs of lines from many files in one call: each row must keep its file and line,
    whatever quirks (ragged, empty, quoted newline, bad UTF-8, truncated) the files hold."""
    alone, runs = [], []
    for i, (lines, truncated) in enumerate(files):
        data = _exchange_file(lines, truncated)
        rows, _ = read_exchange(data)
        alone.extend((i, r) for r in rows)
        state = delimited.ReadState()
        runs.extend((i, raw) for raw in delimited.split_rows(io.BytesIO(data), delimited.EXCHANGE_CSV, state))
    if not runs:  # only empty lines
        assert alone == []
        return
    table, run_index = delimited.parse_batch([raw for _, raw in runs])
    together = [(runs[k][0], r) for k, r in zip(run_index.tolist(), table.to_pylist(), strict=True)]
    norm = [(i, {k: v for k, v in r.items() if v is not None}) for i, r in together]
    assert norm == [(i, {k: v for k, v in r.items() if v is not None}) for i, r in alone]
    projected, _ = delimited.parse_batch([raw for _, raw in runs], keep={"c"})  # the first column is always kept
    assert projected.column_names == ["A", "C", "_line"]
    assert projected.to_pylist() == [{k: r[k] for k in ("A", "C", "_line")} for _, r in together]


def test_batch_with_a_quoted_newline_keeps_every_file_exact():
    a = _exchange_file(["1,x,y", "2,x,y"], False)
    b = _exchange_file(['3,"multi\r\nline",z', "4,x,y"], False)
    runs = [
        r for d in (a, b) for r in delimited.split_rows(io.BytesIO(d), delimited.EXCHANGE_CSV, delimited.ReadState())
    ]
    table, run_index = delimited.parse_batch(runs)
    assert [(r["A"], r["_line"]) for r in table.to_pylist()] == [("1", 6), ("2", 7), ("3", 6), ("4", 8)]
    assert run_index.tolist() == [0, 0, 1, 1]


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=60),
    chunk=st.integers(min_value=3, max_value=200),  # a first read holds the 3-byte BOM whole
    bom=st.booleans(),
    cut_short=st.booleans(),
)
def test_chunks_are_the_file_cut_at_line_ends(lines, chunk, bom, cut_short):
    """Whatever the chunk size, the chunks put together are the file (without its BOM), each ends
    at a line end but the file's cut-short last line, and each says its first line, its line breaks
    and its byte offset."""
    body = b"\n".join(lines) + (b"" if cut_short else b"\n")
    data = (delimited.BOM if bom else b"") + body
    size, delimited.CHUNK_BYTES = delimited.CHUNK_BYTES, chunk
    try:
        chunks = list(delimited.iter_lines_chunks(io.BytesIO(data), delimited.ReadState(), None))
    finally:
        delimited.CHUNK_BYTES = size
    assert b"".join(c for c, *_ in chunks) == body
    at, line = len(data) - len(body), 1
    for k, (text, first, breaks, offset) in enumerate(chunks):
        assert (first, breaks, offset) == (line, text.count(b"\n"), at)
        assert text.endswith(b"\n") or k == len(chunks) - 1
        at, line = at + len(text), line + breaks


def test_line_breaks_counts_like_bytes_count():
    data = (b"x" * 99 + b"\n") * 3000 + b"\r\n\n" + b"tail"  # past the size where numpy counts
    assert delimited.line_breaks(data) == data.count(b"\n") and delimited.line_breaks(b"a\nb") == 1


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), skip=st.integers(0, 3000), cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_a_file_hashed_after_its_head_hashes_as_the_whole_file(data: bytes, skip: int, cuts: list[int]):
    """The reader hashes a file's head when sniffing and the source's reads after it: however the reads
    fall against the head's end, the digest is the whole file's."""
    from exhunt.sources.base import HashAfter

    skip = min(skip, len(data))
    hasher = hashlib.sha256(data[:skip])
    after = HashAfter(hasher, skip)
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for a, b in pairwise(bounds):  # the source reads the file again from its start
        after.update(data[a:b])
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
