"""The case database: rows arrive in any batch sizes and are written in whole row groups, none lost."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from exhunt import case as store_mod
from exhunt import spool as spool_mod
from exhunt.case import CaseWriter as Store
from exhunt.families import family, family_of_table

EXCHANGE, W3C = family("httpproxy"), family("iis")


def _rows(start: int, n: int, artifact: int) -> pa.Table:
    return pa.table(
        {
            "DateTime": [f"2021-03-03T01:00:{i % 60:02d}.000Z" for i in range(n)],
            "Value": [f"v{start + i}" for i in range(n)],
            "_line": pa.array(np.arange(start, start + n), pa.int64()),
            "_artifact": pa.array(np.full(n, artifact), pa.int32()),
        }
    )


def test_rows_are_written_in_whole_row_groups_and_the_rest_at_the_end(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(store_mod, "ROW_GROUP_ROWS", 2048)  # DuckDB's smallest
    inserted: list[int] = []
    real = Store._insert

    def spy(self, table, parts):
        inserted.append(sum(p.num_rows for p in parts))
        return real(self, table, parts)

    monkeypatch.setattr(Store, "_insert", spy)
    st = Store(tmp_path / "c.duckdb")
    start = 0
    for size in (1000, 1500, 5000, 100):  # 7,600 rows in uneven batches
        st.append("log_x", _rows(start, size, 1 + start % 3))
        start += size
    assert inserted == [
        2048,
        4096,
    ]  # whole row groups only while reading (2,500 -> 2,048 + 452; 5,452 -> 4,096 + 1,356)
    st.flush()
    assert inserted == [2048, 4096, 1456]
    got = st.reader.query('SELECT "Value", _line, _ts FROM log_x ORDER BY _line')
    assert [r["Value"] for r in got] == [f"v{i}" for i in range(7600)]
    assert all(r["_ts"] is not None for r in got)
    st.close()


@pytest.mark.parametrize("budget", [1, 2])
def test_reader_threads_store_spooled_rows_themselves_each_once(tmp_path: Path, monkeypatch, budget: int):
    """Reader threads store the rows of spooled tables on their own threads, into files of their own:
    every row is stored once, the row ids of a table are unique, and events are spooled too.
    Each thread leaves rows short of a row group, which the end of reading writes (lanes in parallel
    with a budget of two threads)."""
    monkeypatch.setattr(store_mod, "ROW_GROUP_ROWS", 2048)
    st = Store(tmp_path / "c.duckdb", threads=budget, spool=tmp_path / "spool")

    def read(k: int) -> None:
        for j in range(10):
            assert st.append_here("log_x", _rows((k * 10 + j) * 700, 700, 1 + k))

    threads = [threading.Thread(target=read, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = pa.table({"_artifact": pa.array([9], pa.int32()), "_line": pa.array([1], pa.int64())})
    assert st.append_here("events", events)  # events too, in place of the schema's table
    reader = st.ready_for_queries()
    sql = 'SELECT count(*), count(DISTINCT rowid), min(rowid), max(rowid), count(DISTINCT "Value") FROM log_x'
    assert reader.fetch(sql) == [(28_000, 28_000, 0, 27_999, 28_000)]
    assert reader.fetch("SELECT rowid, _artifact, _line FROM events") == [(0, 9, 1)]
    assert len(st.spool.files["log_x"]) == 4  # one file per reader thread
    st.close()
    assert not Store(tmp_path / "d.duckdb").append_here("log_x", _rows(0, 1, 1))  # a case file: the writer's


def _sql_time(values: dict[str, list[str | None]], expr: str) -> list:
    con = duckdb.connect()
    con.register("t", pa.table({k: pa.array(v, pa.string()) for k, v in values.items()}))
    return [r[0] for r in con.execute(f"SELECT {expr} FROM t").fetchall()]


@pytest.mark.parametrize(
    ("values", "read_by_pyarrow"),
    [
        (["2021-03-03T04:12:01.415Z", "2021-03-03T04:12:01Z", None], True),
        (["2021-03-03T04:12:01.415Z", "2021-03-03T04:12:01.4151234Z"], False),  # 7 digits
        (["2021-03-03T04:12:01.415Z", "garbage"], False),  # SQL's TRY_CAST gives NULL for it
    ],
)
def test_reader_side_time_is_the_sql_time_or_left_to_sql(values, read_by_pyarrow):
    ts = store_mod.log_time(pa.table({"DateTime": pa.array(values, pa.string())}), EXCHANGE)
    assert (ts is not None) == read_by_pyarrow
    if ts is not None:
        assert ts.to_pylist() == _sql_time({"DateTime": values}, "TRY_CAST(rtrim(DateTime, 'Z') AS TIMESTAMP)")


def test_reader_side_time_of_w3c_rows():
    date, time_ = ["2021-03-03", "2021-03-03", None, "2021-03-03"], ["04:12:01", "4:12:01", "01:00:00", "junk"]
    ts = store_mod.log_time(pa.table({"date": date, "time": time_}), W3C)
    assert ts is None  # "junk" cannot be read: the whole batch goes to SQL
    ts = store_mod.log_time(pa.table({"date": date[:3], "time": time_[:3]}), W3C)
    assert ts.to_pylist() == _sql_time(
        {"date": date[:3], "time": time_[:3]}, "TRY_CAST(date || ' ' || time AS TIMESTAMP)"
    )


def test_rows_whose_time_the_reader_left_to_sql_still_get_it(tmp_path: Path):
    """One insert may mix batches with a reader-side `_ts` and batches without (pyarrow could not read
    their times): the latter get DuckDB's TRY_CAST, not NULL."""
    st = Store(tmp_path / "c.duckdb")
    fast = _rows(0, 3, 1)
    fast = fast.append_column("_ts", store_mod.log_time(fast, EXCHANGE))
    slow = _rows(3, 2, 2).set_column(0, "DateTime", pa.array(["2021-03-03T01:00:00.1234567Z", "junk"]))
    assert store_mod.log_time(slow, EXCHANGE) is None
    st.append("log_x", fast)
    st.append("log_x", slow)
    st.flush()
    got = [r["_ts"] for r in st.reader.query("SELECT _ts FROM log_x ORDER BY _line")]
    assert got[:3] == [datetime(2021, 3, 3, 1, 0, i) for i in range(3)]
    assert got[3] == datetime(2021, 3, 3, 1, 0, 0, 123456) and got[4] is None
    st.close()


def test_the_writer_keeps_a_small_share_while_reading_and_never_loses_a_wide_batch_to_it(tmp_path, monkeypatch):
    """While the readers run DuckDB gets WRITE_MEMORY (its cache of written blocks grew the peak with
    the input); a row group too wide for that share is stored with the whole limit, not refused."""
    monkeypatch.setattr(store_mod, "WRITE_MEMORY", "8MB")
    writer = Store(tmp_path / "c.duckdb", memory_limit="512MB")
    limit = lambda: writer._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # noqa: E731
    small = limit()
    n = store_mod.ROW_GROUP_ROWS
    cols = {f"c{i}": pa.array(np.full(n, "v" * 40, dtype=object)) for i in range(60)}
    cols |= {"_artifact": pa.array(np.ones(n, np.int32)), "_line": pa.array(np.arange(n))}
    writer.append("log_httpproxy", pa.table(cols))
    writer.flush()
    assert writer.failed == []
    assert writer.reader.fetch("SELECT count(*) FROM log_httpproxy")[0][0] == n
    assert small != limit()  # the wide batch needed, and got, the whole limit
    writer.ready_for_queries()
    writer.close()


@pytest.mark.parametrize("spooled", [False, True])
def test_spooled_and_stored_records_read_the_same(tmp_path: Path, spooled: bool):
    """Without a case file the log records go to Parquet files read through views; every question the
    rules and analytics ask (tables, columns, row ids, times, records) gets the answer a table gives,
    with columns that differ between files joined by name."""
    st = Store(tmp_path / "c.duckdb", spool=tmp_path / "spool" if spooled else None)
    fast = _rows(0, 3, 1)
    fast = fast.append_column("_ts", store_mod.log_time(fast, EXCHANGE))
    slow = _rows(3, 2, 2).set_column(0, "DateTime", pa.array(["2021-03-03T01:00:00.1234567Z", "junk"]))
    wider = _rows(5, 2, 3).append_column("Extra", pa.array(["e1", "e2"]))
    for batch in (fast, slow, wider):
        st.append("log_x", batch)
    st.add_artifacts([{"id": i, "path": f"f{i}.log", "host": "EXCH01"} for i in (1, 2, 3)])
    reader = st.ready_for_queries()
    assert "log_x" in reader.tables()
    assert set(reader.columns("log_x")) == {"DateTime", "Value", "_line", "_artifact", "_ts", "Extra"}
    assert "rowid" not in reader.column_map("log_x")
    rows = reader.query("SELECT rowid AS rid, Value, Extra, _ts FROM log_x ORDER BY _line")
    assert [r["Value"] for r in rows] == [f"v{i}" for i in range(7)]
    assert len({r["rid"] for r in rows}) == 7
    assert rows[3]["_ts"] == datetime(2021, 3, 3, 1, 0, 0, 123456) and rows[4]["_ts"] is None
    assert [r["Extra"] for r in rows][-3:] == [None, "e1", "e2"]
    (record,) = reader.records(family_of_table("log_x"), [rows[6]["rid"]])
    assert record["Extra"] == "e2" and record["_rowid"] == rows[6]["rid"] and "rowid" not in record
    st.close()
    assert not spooled or any((tmp_path / "spool").glob("*.parquet"))


def test_spooled_columns_get_a_dictionary_only_when_their_values_repeat(tmp_path: Path):
    """A column whose first values repeat is written with a dictionary (DuckDB then runs ILIKE once per
    distinct value); one of distinct values is written plain, row ids and lines as deltas, and all of
    them read back the same."""
    import pyarrow.parquet as pq

    st = Store(tmp_path / "c.duckdb", spool=tmp_path / "spool")
    n = 5000
    rows = _rows(0, n, 1).append_column("Agent", pa.array([f"agent{i % 7}" for i in range(n)]))
    st.append("log_x", rows.append_column("Half", pa.array([None] * 4000 + [f"h{i}" for i in range(1000)])))
    reader = st.ready_for_queries()
    assert reader.fetch('SELECT count(DISTINCT "Value"), count(DISTINCT "Agent"), count("Half") FROM log_x') == [
        (n, 7, 1000)
    ]
    (path,) = st.spool.files["log_x"]
    meta = pq.ParquetFile(path).metadata
    encodings = {meta.schema.column(i).name: meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
    with_dictionary = {name for name, used in encodings.items() if any("DICTIONARY" in e for e in used)}
    assert {"Agent", "DateTime", "_artifact"} <= with_dictionary  # 7, 60 and 1 distinct values
    assert not {"Value", "_line", "_rid", "Half"} & with_dictionary  # distinct (nulls do not count)
    assert all("DELTA_BINARY_PACKED" in encodings[name] for name in ("_line", "_rid"))  # exhunt's own numbers
    st.close()


def test_spooled_columns_of_any_type_are_stored(tmp_path: Path):
    """A column whose values cannot be counted for the choice of a dictionary (all null, nested) is
    written plain: its batch's rows are stored, not lost with their files."""
    st = Store(tmp_path / "c.duckdb", spool=tmp_path / "spool")
    rows = _rows(0, 3, 1).append_column("Empty", pa.nulls(3)).append_column("Parts", pa.array([[1], [2], [2]]))
    st.append("log_x", rows)
    reader = st.ready_for_queries()
    assert st.failed == []
    assert reader.fetch('SELECT count(*), count("Empty"), list_sum(flatten(list("Parts"))) FROM log_x') == [(3, 0, 5)]
    st.close()


def test_a_log_field_named_rowid_never_stands_for_the_stores_row_id(tmp_path: Path):
    """A `#Fields` list naming `rowid` (the attacker writes the log) gets its own column name: a rule's
    hits are still found by the store's row ids, in the default scan and with a case file."""
    from exhunt.scan import ScanOptions, scan

    log = tmp_path / "coll" / "C" / "inetpub" / "logs" / "LogFiles" / "W3SVC1" / "u_ex210303.log"
    log.parent.mkdir(parents=True)
    lines = [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Fields: date time rowid cs-method cs-uri-stem cs-uri-query s-port c-ip cs(User-Agent) sc-status",
        *[f"2021-03-03 01:00:{i:02d} 999 GET /owa/ - 443 10.0.0.{i} Mozilla 200" for i in range(30)],
        "2021-03-03 02:00:00 0 POST /ecp/y.js - 443 203.0.113.9 python-requests/2.25 200",
    ]
    log.write_text("\n".join(lines) + "\n")
    for options in (ScanOptions(), ScanOptions(case=tmp_path / "c.duckdb")):
        result = scan(tmp_path / "coll", options)
        hits = [f for f in result.findings if f.rule.id == "proxylogon-ecp-js-post"]
        assert hits and [e.line for e in hits[0].evidence] == [33], options
        assert "203.0.113.9" in hits[0].evidence[0].raw


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("No space left, unforeseen")])
def test_a_spool_that_cannot_be_written_costs_those_files_only(tmp_path: Path, monkeypatch, error):
    """A full disk under the temporary folder refuses a batch: its artifacts are named as not stored,
    the rest of the family is stored and queryable. An error of an unforeseen kind costs no more."""
    st = Store(tmp_path / "c.duckdb", spool=tmp_path / "spool")
    real = spool_mod.pq.ParquetWriter.write_table

    def full_disk(self, table, *args, **kwargs):
        if 2 in table.column("_artifact").to_pylist():
            raise error
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(spool_mod.pq.ParquetWriter, "write_table", full_disk)
    st.append("log_x", _rows(0, 3, 1))
    st.append("log_x", _rows(3, 2, 2))
    reader = st.ready_for_queries()
    assert [ids for ids, _ in st.failed] == [{2}] and "No space left" in st.failed[0][1]
    assert [r["Value"] for r in reader.query("SELECT Value FROM log_x ORDER BY _line")] == ["v0", "v1", "v2"]
    st.close()


def test_a_spool_file_that_cannot_be_finished_costs_its_own_artifacts_only(tmp_path: Path, monkeypatch):
    """A Parquet file whose footer cannot be written (a full disk at the end of reading) is left out of
    its table's view and its artifacts are named as not stored; the other tables are read as usual."""
    st = Store(tmp_path / "c.duckdb", spool=tmp_path / "spool")
    st.append("log_x", _rows(0, 3, 1))
    st.append("log_y", _rows(0, 2, 2))
    st.flush()
    real = spool_mod.pq.ParquetWriter.close
    (lane,) = st.spool.lanes
    broken = lane.writers[next(k for k in lane.writers if k[0] == "log_y")][0]

    def close(self):
        real(self)
        if self is broken:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_mod.pq.ParquetWriter, "close", close)
    reader = st.ready_for_queries()
    assert [ids for ids, _ in st.failed] == [{2}] and "No space left" in st.failed[0][1]
    assert "log_x" in reader.tables() and "log_y" not in reader.tables()
    assert reader.fetch("SELECT count(*) FROM log_x")[0][0] == 3
    st.close()
