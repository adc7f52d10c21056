"""A kept case's records as Parquet beside it: written by the readers, named in the case, opened safely."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest

from exhunt import case_records
from exhunt.case import CaseReader
from exhunt.errors import UsageError
from exhunt.outputs import prepare_case
from exhunt.query import run_query
from exhunt.scan import ScanOptions, scan
from exhunt.synth import generate


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    root = tmp_path_factory.mktemp("coll") / "EXCH01-triage"
    generate(root, seed=5, users=3, days=1)
    case = root.parent.parent / "kept" / "case.duckdb"
    case.parent.mkdir()
    result = scan(root, ScanOptions(case=case, threads=2))
    return root, case, result.stats.records


def _query(case: Path, sql: str) -> list[tuple]:
    con, result = run_query(case, sql)
    try:
        return list(result.rows())
    finally:
        con.close()


def _copied(case: Path, to: Path) -> Path:
    """A copy of a kept case with its records folder."""
    shutil.copy(case, to)
    shutil.copytree(case_records.folder_of(case), case_records.folder_of(to))
    return to


def test_the_case_names_its_record_files_and_holds_no_view_that_reads_files(kept: tuple[Path, Path, int]) -> None:
    _, case, records = kept
    folder = case_records.folder_of(case)
    con = duckdb.connect(str(case), read_only=True)
    try:
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        files = con.execute("SELECT table_name, file FROM record_files").fetchall()
    finally:
        con.close()
    assert views == [] and files
    assert all((folder / name).is_file() for _, name in files)
    tables = {t for t, _ in files}
    counted = sum(_query(case, f'SELECT count(*) FROM "{t}"')[0][0] for t in tables)
    assert counted == records  # every record read is in the files, through `exhunt query`


def test_a_case_moved_with_its_folder_still_opens(kept: tuple[Path, Path, int], tmp_path: Path) -> None:
    _, case, _ = kept
    moved = tmp_path / "elsewhere" / "moved.duckdb"
    moved.parent.mkdir()
    _copied(case, moved)
    before = _query(case, "SELECT count(*), max(rowid) FROM log_iis")
    assert _query(moved, "SELECT count(*), max(rowid) FROM log_iis") == before
    reader = CaseReader.open_saved(moved)
    try:
        assert "log_iis" in reader.tables() and reader.fetch("SELECT count(*) FROM log_iis") == [before[0][:1]]
    finally:
        reader.close()


def test_a_hostile_manifest_reads_nothing_outside_the_folder(kept: tuple[Path, Path, int], tmp_path: Path) -> None:
    _, case, _ = kept
    other = tmp_path / "other"
    other.mkdir()
    theirs = other / "case.duckdb"
    shutil.copy(case, theirs)
    folder = case_records.folder_of(theirs)
    folder.mkdir()
    outside = tmp_path / "secret.parquet"
    shutil.copy(next(case_records.folder_of(case).glob("*.parquet")), outside)
    os.symlink(outside, folder / "7.parquet")  # a link out of the folder
    shutil.copy(outside, folder / "9.parquet")
    con = duckdb.connect(str(theirs))
    try:
        con.execute("DELETE FROM record_files")
        con.executemany(
            "INSERT INTO record_files VALUES (?, ?)",
            [
                ("log_iis", "../secret.parquet"),
                ("log_iis", str(outside)),
                ("log_iis", "7.parquet"),
                ("log_iis", "8.parquet"),
                ("findings", "9.parquet"),  # a real file, but a view named `findings` would hide the case's
            ],
        )
    finally:
        con.close()
    assert case_records.listed(duckdb.connect(str(theirs), read_only=True), theirs) == {}
    reader = CaseReader.open_saved(theirs)
    try:
        assert "log_iis" not in reader.tables()
        with pytest.raises(duckdb.Error):  # file access stays off but for the (empty) folder
            reader.fetch(f"SELECT count(*) FROM read_parquet('{outside}')")
    finally:
        reader.close()


def test_a_new_scan_replaces_exhunts_folder_and_refuses_anyone_elses(
    kept: tuple[Path, Path, int], tmp_path: Path
) -> None:
    root, _, _ = kept
    case = tmp_path / "c.duckdb"
    scan(root, ScanOptions(case=case))
    stale = case_records.folder_of(case) / "99.parquet"
    stale.write_bytes(b"left over")
    prepare_case(case, root)
    assert not case_records.folder_of(case).exists() and not case.exists()
    foreign = tmp_path / "d.duckdb"
    case_records.folder_of(foreign).mkdir()
    (case_records.folder_of(foreign) / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not exhunt's records folder"):
        prepare_case(foreign, root)
    assert (case_records.folder_of(foreign) / "mine.txt").read_text() == "keep me"
    evidence = tmp_path / "e.duckdb.records"  # evidence named like the records folder of a case beside it
    evidence.mkdir()
    (evidence / case_records.MARKER).touch()
    with pytest.raises(UsageError, match="would be in the evidence"):
        prepare_case(tmp_path / "e.duckdb", evidence)
    assert evidence.is_dir()


def test_a_case_with_its_records_in_tables_goes_on_with_tables(kept: tuple[Path, Path, int], tmp_path: Path) -> None:
    """A case an earlier exhunt (or a fleet's merge of shards) wrote keeps its record tables through an
    incremental rescan, and no empty records folder is left beside it."""
    import pyarrow as pa

    from exhunt.case import EVIDENCE, FINDINGS, CaseWriter
    from exhunt.collection import open_collection
    from exhunt.ingest import ingest
    from exhunt.rescan import Rescan
    from exhunt.rules.yara import compile_rules

    root, _, records = kept
    case = tmp_path / "tables.duckdb"
    writer = CaseWriter(case)  # no spool: records in tables, as before
    collection = open_collection(root)
    try:
        ingest(collection, writer, content_rules=compile_rules(None), keep={}, threads=1)
        none = pa.table({"family": pa.array([], pa.string())})
        writer.save_results(pa.Table.from_pylist([], FINDINGS), pa.Table.from_pylist([], EVIDENCE), none, {})
    finally:
        writer.close()
        collection.close()
    result = scan(root, ScanOptions(case=case, rescan=Rescan(changed=[], removed=[])))
    assert result.stats.records == records and not case_records.folder_of(case).exists()
    assert _query(case, "SELECT count(*) FROM log_iis") == _query(kept[1], "SELECT count(*) FROM log_iis")


def test_a_rescan_over_unreadable_kept_records_says_so(kept: tuple[Path, Path, int], tmp_path: Path) -> None:
    from exhunt.errors import InputError
    from exhunt.rescan import Rescan

    root, case, _ = kept
    copy = _copied(case, tmp_path / "copy.duckdb")
    for path in case_records.folder_of(copy).glob("*.parquet"):
        path.write_bytes(b"not parquet at all")
    assert _query(copy, "SELECT count(*) FROM findings") == _query(case, "SELECT count(*) FROM findings")  # opens
    with pytest.raises(InputError, match=r"cannot be read.*without --rescan"):
        scan(root, ScanOptions(case=copy, rescan=Rescan(changed=[], removed=[])))


def test_exhunt_query_says_which_record_files_it_could_not_read(kept: tuple[Path, Path, int], tmp_path: Path) -> None:
    """A damaged record file costs its own records; `exhunt query` answers from the rest and says on
    stderr that records are missing, naming where to see which files."""
    from typer.testing import CliRunner

    from exhunt.cli import app

    _, case, _ = kept
    copy = _copied(case, tmp_path / "copy.duckdb")
    con = duckdb.connect(str(copy), read_only=True)
    (damaged,) = con.execute("SELECT file FROM record_files WHERE table_name = 'log_iis'").fetchall()[:1]
    con.close()
    (case_records.folder_of(copy) / damaged[0]).write_bytes(b"cut short")
    sql = "SELECT count(*) AS n FROM log_httpproxy"
    run = CliRunner().invoke(app, ["query", str(copy), sql, "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == {"n": _query(case, sql)[0][0]}  # the other tables answer whole
    assert "1 record file(s) of this case cannot be read (log_iis)" in run.stderr
    assert _query(copy, f"SELECT * FROM {case_records.DAMAGED}") == [("log_iis", damaged[0])]
    clean = CliRunner().invoke(app, ["query", str(case), sql])
    assert clean.exit_code == 0 and "cannot be read" not in clean.stderr
