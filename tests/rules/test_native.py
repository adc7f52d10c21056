"""Rule conditions compiled to SQL: values are literal text whatever characters they hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exhunt.case import CaseReader, CaseWriter
from exhunt.rules.model import rule_from_dict
from exhunt.rules.native import run_rule

QUERIES = ["a=50%_off", "a=50x_off", "a=50%Xoff", "path=C:\\temp\\x", "path=C:/temp/x", "Q=PORT=1", None]


def iis_case(path: Path, queries: list[str | None]) -> CaseWriter:
    """A case of IIS rows with these query strings, client 10.0.0.<row>, ready for queries."""
    st = CaseWriter(path)
    n = len(queries)
    st.append(
        "log_iis",
        pa.table({
            "date": ["2021-03-03"] * n, "time": ["01:00:00"] * n, "c-ip": [f"10.0.0.{i}" for i in range(n)],
            "cs-uri-query": queries, "_line": pa.array(np.arange(1, n + 1), pa.int64()),
            "_artifact": pa.array(np.ones(n), pa.int32()),
        }),
    )  # fmt: skip
    st.add_artifacts([{"id": 1, "path": "u_ex.log", "host": "EXCH01"}])
    st.ready_for_queries()
    return st


@pytest.fixture
def store(tmp_path: Path):
    st = iis_case(tmp_path / "c.duckdb", QUERIES)
    yield st.reader
    st.close()


def a_rule(cond: dict, group_by: list[str] | None = None, source: str = "iis"):
    """A test rule with this condition."""
    fields = {"group_by": group_by} if group_by else {}
    return rule_from_dict(
        {"id": "t", "title": "t", "description": "t", "severity": "low", "kind": "indicator", "source": source,
         "where": cond, **fields}, "test")  # fmt: skip


def grouped(case: CaseReader, cond: dict, by: str) -> list[str]:
    """The `by` value of each group a rule with this condition finds, sorted."""
    return sorted(f.group[by] for f in run_rule(case, a_rule(cond, [by]), {}, None))


def hits(store: CaseReader, cond: dict) -> list[str]:
    return grouped(store, cond, "cs-uri-query")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("50%_off", ["a=50%_off"]),  # % and _ are not wildcards
        ("C:\\temp", ["path=C:\\temp\\x"]),  # nor is the backslash an escape
        ("port=", ["Q=PORT=1"]),  # case-insensitive by default
    ],
)
def test_contains_reads_values_literally(store: CaseReader, value: str, expected: list[str]):
    assert hits(store, {"field": "cs-uri-query", "contains": value}) == expected


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"contains": "=50%"}, ["a=50%Xoff", "a=50%_off"]),  # no letter: a plain substring search
        ({"contains": ":\\"}, ["path=C:\\temp\\x"]),
        ({"endswith": "=1"}, ["Q=PORT=1"]),
        ({"like": "*=50?_off"}, ["a=50%_off", "a=50x_off"]),  # `?` is one character, `_` a literal one
        ({"like": "A=50*OFF"}, ["a=50%Xoff", "a=50%_off", "a=50x_off"]),  # no escape needed, case folded
        ({"like": "a=50%*"}, ["a=50%Xoff", "a=50%_off"]),  # a literal % in a glob
        ({"like": "path=c:\\*"}, ["path=C:\\temp\\x"]),  # a literal backslash
    ],
)
def test_uncased_values_and_globs_match_as_written(store: CaseReader, cond: dict, expected: list[str]):
    assert hits(store, {"field": "cs-uri-query", **cond}) == expected


def test_contains_case_sensitive_and_lists(store: CaseReader):
    assert hits(store, {"field": "cs-uri-query", "contains": "port=", "case_sensitive": True}) == []
    assert hits(store, {"field": "cs-uri-query", "contains": ["50x", "PORT"]}) == ["Q=PORT=1", "a=50x_off"]


EVENT_VALUES = [
    "C:\\Temp\\A.B",
    "c:\\temp\\a(b)",
    "x$y^",
    "[z]",
    "a.bc",
    "pre+post*",
    "tab\there",
    "É.exe",
    "\u0130+P",
    None,
]
LISTS = {
    "equals": ["c:\\temp\\a.b", "x$y^", "[Z]"],
    "startswith": ["C:\\TEMP", "x$", "pre+"],
    "endswith": ["(b)", "^", "*", ".EXE"],
    "contains": ["a.b", "\\t", "$y", "+p", "\there", "i+"],
}


@pytest.mark.parametrize("op", sorted(LISTS))
@pytest.mark.parametrize("cs", [False, True])
def test_value_lists_on_a_json_field_match_as_each_value_alone(tmp_path: Path, monkeypatch, op: str, cs: bool):
    """A list of values on a computed field (here an event's data) is one pattern over the field
    computed once; it matches exactly what the values one by one match, metacharacters and case."""
    import json

    from exhunt.rules import native

    st = CaseWriter(tmp_path / "e.duckdb")
    n = len(EVENT_VALUES)
    st.append(
        "events",
        pa.table({
            "event_id": pa.array([1] * n, pa.int32()), "computer": [f"H{i}" for i in range(n)],
            "data": [json.dumps({} if v is None else {"F": v}) for v in EVENT_VALUES],
            "_line": pa.array(np.arange(1, n + 1), pa.int64()), "_artifact": pa.array(np.ones(n), pa.int32()),
        }),
    )  # fmt: skip
    st.add_artifacts([{"id": 1, "path": "e.jsonl", "host": "EXCH01"}])
    case = st.ready_for_queries()
    rule = a_rule({"field": "data.F", op: LISTS[op], "case_sensitive": cs}, ["computer"], "events")
    together = sorted(f.group["computer"] for f in run_rule(case, rule, {}, None))
    monkeypatch.setattr(native, "ANCHORS", {})  # each value its own condition
    monkeypatch.setattr(native, "ascii_cases", lambda value: None)  # and the plain test (ILIKE or lower())
    alone = sorted(f.group["computer"] for f in run_rule(case, rule, {}, None))
    st.close()
    assert together == alone and (together or (op == "equals" and cs))


def test_evidence_samples_follow_time_then_file_and_line_not_storage_order(tmp_path: Path):
    """Reader threads store rows in an order that varies from run to run; the samples of rows of one
    time come in file and line order, so the same input gives the same evidence."""
    st = CaseWriter(tmp_path / "c.duckdb")
    for artifact in (2, 1):  # the later file's rows stored first
        st.append(
            "log_iis",
            pa.table({
                "date": ["2021-03-03"] * 3, "time": ["01:00:00"] * 3, "c-ip": ["10.0.0.1"] * 3,
                "cs-uri-query": ["x=1"] * 3, "_line": pa.array([30, 10, 20], pa.int64()),
                "_artifact": pa.array([artifact] * 3, pa.int32()),
            }),
        )  # fmt: skip
    st.add_artifacts([{"id": 1, "path": "a.log", "host": "EXCH01"}, {"id": 2, "path": "b.log", "host": "EXCH01"}])
    case = st.ready_for_queries()
    rule = a_rule({"field": "cs-uri-query", "equals": "x=1"})
    (found,) = run_rule(case, rule, {}, 4)
    ids = [rid for _, rid in found.rows]
    placed = dict(case.fetch("SELECT rowid, [_artifact, _line] FROM log_iis"))
    st.close()
    assert [placed[i] for i in ids] == [[1, 10], [1, 20], [1, 30], [2, 10]]


# letters that fold oddly beside ASCII without case, and a combining accent
GATE_ALPHABET = "aAkKsSiIéÉİıKſ\u0301-./:_%\\ 0123456789$~"
LOWERED = {  # each test as the plain SQL of lowering both sides, the oracle
    "contains": "contains(lower(q), lower(?))",
    "equals": "lower(q) = lower(?)",
    "startswith": "starts_with(lower(q), lower(?))",
    "endswith": "ends_with(lower(q), lower(?))",
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.one_of(st.none(), st.text(GATE_ALPHABET, max_size=12)), min_size=1, max_size=8),
    value=st.text(GATE_ALPHABET, min_size=1, max_size=8),
    op=st.sampled_from(["contains", "equals", "startswith", "endswith"]),
    negated=st.booleans(),
)
def test_case_insensitive_tests_match_as_lowering_both_sides(tmp_path: Path, values, value, op, negated):
    """However a case-insensitive test is compiled (gated by a `contains` of the value's longest
    stretch without case, a `contains` as an RE2 pattern of ASCII case classes, only the head or tail
    lowered, an equality only for texts of a fitting length; a leaf of two tests, each coalesced
    alone), it matches exactly the rows that lowering text and value matches: NULLs, odd case folding
    (the dotted I and the Kelvin sign fold to ASCII letters, the long s does not), combining marks and
    negation included."""
    import tempfile

    folded = value.lower().replace("i", "\u0130").replace("k", "\u212a")  # lower() gives back the value
    values = [*values, value.swapcase(), value.upper(), f"x{value.lower()}", f"{value.swapcase()}y", f"x{folded}"]
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        st_ = iis_case(Path(folder) / "g.duckdb", values)
        case = st_.reader
        leaf = {"field": "cs-uri-query", op: value, "exists": True}  # two tests in one leaf
        cond = {"none": [leaf]} if negated else leaf
        compiled = grouped(case, cond, "c-ip")
        test = f"coalesce({LOWERED[op]}, false)"
        oracle = sorted(
            ip
            for (ip,) in case.fetch(
                f'SELECT "c-ip" FROM (SELECT "c-ip", "cs-uri-query" AS q FROM log_iis) WHERE {"NOT " if negated else ""}{test}',
                [value],
            )
        )
        st_.close()
    assert compiled == oracle


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cmd=", ["CmD=1", "cmd=1"]),
        ("ip=", ["&\u0130P=1", "&iP=1"]),  # lower() folds the dotted capital I to i
        ("kMd", ["\u212amd=2", "kmd=3"]),  # and the Kelvin sign to k
        ("ss", ["SS=4"]),  # but not the long s to s (RE2's own case folding would)
    ],
)
def test_contains_as_ascii_case_classes_matches_as_lowering_does(tmp_path: Path, value: str, expected: list[str]):
    from exhunt.rules.native import ascii_cases

    assert ascii_cases("cmd=") == "[cC][mM][dD]="
    assert ascii_cases("é") is None  # only ASCII values take the pattern
    rows = ["CmD=1", "cmd=1", "&\u0130P=1", "&iP=1", "\u212amd=2", "kmd=3", "\u017fs=4", "SS=4", None]
    st_ = iis_case(tmp_path / "a.duckdb", rows)
    assert hits(st_.reader, {"field": "cs-uri-query", "contains": value}) == sorted(expected)
    st_.close()


def test_the_gate_is_the_longest_stretch_without_case():
    from exhunt.rules.native import uncased_run

    assert uncased_run("206.188.196.77:8080/themes.aspx") == "206.188.196.77:8080/"
    assert uncased_run("\\PsExec64.exe") == "64."
    assert uncased_run("port=") is None  # too short to pay
    assert uncased_run("É1-2é") == "1-2"  # a letter outside ASCII ends a stretch


def test_a_contains_is_spelt_by_whether_the_column_repeats(tmp_path: Path):
    """On a column whose values repeat, DuckDB runs ILIKE once per distinct value and RE2 once per
    row, so the spelling follows the column; the rows found are the same either way."""
    from exhunt.families import family
    from exhunt.rules.native import Compiler

    st_ = iis_case(tmp_path / "r.duckdb", ["Cmd=Sync"] * 30 + [f"Cmd=Ping&n={i}" for i in range(30)] + [None])
    case = st_.reader
    assert case.repeats("log_iis", "c-ip") is False and case.repeats("log_iis", "date") is True
    for column, spelt in (("date", "ILIKE"), ("c-ip", "regexp_matches")):
        comp = Compiler(family("iis"), case.columns("log_iis"), {}, case=case)
        assert spelt in comp.compile({"field": column, "contains": "x"})
    assert len(hits(case, {"field": "cs-uri-query", "contains": "cmd=p"})) == 30
    st_.close()


@pytest.mark.parametrize("negated", [False, True])
@pytest.mark.parametrize(
    ("pattern", "cs"),
    [("^/owa/auth/[^/]+\\.aspx$", False), ("ASPX$", False), ("ASPX$", True), ("^$", False), ("x|(?i:ĸ)", True)],
)
def test_a_regex_asked_of_a_repeating_columns_values_matches_as_on_the_rows(tmp_path: Path, pattern, cs, negated):
    """During the rules (a frozen reader) a regex on a column whose values repeat is answered from its
    distinct values and an IN list; the rows found are those the regex finds row by row."""
    stems = ["/owa/auth/logon.aspx", "/OWA/auth/x.ASPX", "/owa/auth/a/b.aspx", "", None, "/ecp/\u0130x.aspx", "xĸ"]
    st_ = iis_case(tmp_path / "v.duckdb", [stems[i % len(stems)] for i in range(70)])
    leaf = {"field": "cs-uri-query", "regex": pattern, "case_sensitive": cs}
    cond = {"none": [leaf]} if negated else leaf
    rows = grouped(st_.reader, cond, "c-ip")
    frozen = st_.reader.cursor(frozen=True)
    assert frozen.matching_values("log_iis", "cs-uri-query", pattern, "" if cs else "i") is not None  # the path taken
    by_values = grouped(frozen, cond, "c-ip")
    frozen.close()
    st_.close()
    assert by_values == rows


def test_distinct_values_are_kept_only_within_bounds(tmp_path: Path, monkeypatch):
    """Too many distinct values, or too many bytes of them (a hostile log's long URLs), and the regex
    runs on the rows: what a frozen reader keeps stays small whatever the logs hold."""
    from exhunt import case as case_module

    st_ = iis_case(tmp_path / "b.duckdb", ["/a/" + "x" * 40, "/b/" + "y" * 40] * 20)
    frozen = st_.reader.cursor(frozen=True)
    assert st_.reader.matching_values("log_iis", "cs-uri-query", "^/a/", "") is None  # not frozen: not kept
    assert frozen.matching_values("log_iis", "cs-uri-query", "^/a/", "") == ["/a/" + "x" * 40]
    for bound, value in (("DISTINCT_BYTES", 80), ("DISTINCT_VALUES", 1), ("MATCHED_VALUES", 0)):
        with monkeypatch.context() as patch:
            patch.setattr(case_module, bound, value)
            again = st_.reader.cursor(frozen=True)
            assert again.matching_values("log_iis", "cs-uri-query", "^/a/", "") is None, bound
            again.close()
    frozen.close()
    st_.close()
