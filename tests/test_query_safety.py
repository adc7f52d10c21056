"""`exhunt query` on a case someone else prepared: read-only, no file access, no extensions, hostile
views refused, every output format escaped. Each refusal says why; nothing outside the case is read
or written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from exhunt.cli import app

runner = CliRunner()
SECRET = "root:SECRET-HASH-4f1d:19000:0:99999:7:::"


@pytest.fixture
def case(tmp_path: Path) -> Path:
    """A small case file with the tables a scan writes, plus hostile text in a findings row."""
    path = tmp_path / "cases" / "case.duckdb"
    path.parent.mkdir()
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_id', '\"exhunt.case\"')")
    con.execute("CREATE TABLE findings (rule VARCHAR, title VARCHAR, count BIGINT)")
    con.execute(
        "INSERT INTO findings VALUES ('r1', ?, 3), ('=HYPERLINK(\"http://x\")', 'plain', 1)",
        ["evil\x1b[2J\x1b[31mred\u202etxt.exe\nsecond line"],
    )
    con.close()
    return path


def _hostile(case: Path, view_sql: str) -> None:
    con = duckdb.connect(str(case))
    con.execute("DROP TABLE findings")
    con.execute(view_sql)
    con.close()


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("COPY findings TO '{out}'", "COPY"),
        ("COPY (SELECT 1) TO '{out}' (FORMAT csv)", "COPY"),
        ("SELECT * FROM read_text('{secret}')", "reads or writes outside the case"),
        ("SELECT * FROM read_csv('{secret}')", "reads or writes outside the case"),
        ("SELECT * FROM '{secret}'", "does not exist"),  # no replacement scan of a path without file access
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("ATTACH '{out}' AS x", "ATTACH"),
        ("SET enable_external_access = true", "SET"),
        ("SELECT 1; COPY findings TO '{out}'", "COPY"),
        ("EXPORT DATABASE '{outdir}'", "EXPORT"),
    ],
)
def test_statements_that_touch_files_are_refused(case: Path, tmp_path: Path, sql: str, word: str):
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    out, outdir = tmp_path / "written.csv", tmp_path / "exported"
    before = _listing(case.parent)
    res = runner.invoke(app, ["query", str(case), sql.format(out=out, secret=secret, outdir=outdir)])
    assert res.exit_code == 2, res.output
    assert word in res.output and ("refused" in res.output or word == "does not exist"), res.output
    assert len(res.output.strip().splitlines()) == 1
    assert SECRET not in res.output
    assert not out.exists() and not outdir.exists()
    assert _listing(case.parent) == before  # nothing beside the case either (no .wal, no .tmp)


@pytest.mark.parametrize(
    "view",
    [
        "CREATE VIEW findings AS SELECT * FROM read_text('{secret}')",
        "CREATE VIEW findings AS SELECT * FROM read_csv('{secret}', header=false)",
        "CREATE MACRO findings_m() AS TABLE SELECT * FROM read_text('{secret}')",
    ],
)
def test_a_case_whose_views_read_files_is_refused(case: Path, tmp_path: Path, view: str):
    secret = tmp_path / "passwd"
    secret.write_text(SECRET)
    _hostile(case, view.format(secret=secret))
    for fmt in ([], ["--json"], ["--csv"]):
        res = runner.invoke(app, ["query", str(case), "SELECT * FROM meta", *fmt])
        assert res.exit_code == 2, res.output
        assert SECRET not in res.output
        assert "refused" in res.output and ("view findings" in res.output or "macro findings_m" in res.output)


def test_external_access_stays_off_even_past_the_view_check(case: Path, tmp_path: Path):
    """A view the pattern check misses still cannot read the file: DuckDB refuses it."""
    from exhunt.query import QueryRefused, connect

    secret = tmp_path / "passwd"
    secret.write_text(SECRET)
    con = connect(case)
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"SELECT * FROM read_text('{secret}')").fetchall()
    con.close()
    assert issubclass(QueryRefused, Exception)


def test_json_and_csv_escape_control_characters(case: Path):
    res = runner.invoke(app, ["query", str(case), "SELECT rule, title FROM findings ORDER BY count DESC", "--json"])
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stdout and "\u202e" not in res.stdout
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows[0]["title"] == "evil\x1b[2J\x1b[31mred\u202etxt.exe\nsecond line"  # the data itself is intact
    res = runner.invoke(app, ["query", str(case), "SELECT rule, title FROM findings ORDER BY count DESC", "--csv"])
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stdout and "\u202e" not in res.stdout
    lines = res.stdout.splitlines()
    assert len(lines) == 3  # the newline in the title is escaped, not a new CSV line
    assert "evil\\x1b[2J\\x1b[31mred\\u202etxt.exe\\nsecond line" in lines[1]
    assert lines[2].startswith("\"'=HYPERLINK")  # formula-safe


def test_table_view_escapes_and_the_case_is_untouched(case: Path):
    before = _listing(case.parent)
    res = runner.invoke(app, ["query", str(case), "SELECT * FROM findings"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\u202e" not in res.output
    assert _listing(case.parent) == before


def test_a_read_only_case_folder_is_enough(case: Path):
    os.chmod(case, 0o444)
    res = runner.invoke(app, ["query", str(case), "SELECT count(*) AS n FROM findings", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"n": 2}
    shutil.rmtree(case.parent)
