"""The staged pipeline: the same evidence whatever the CPU budget or case mode, every evidence line
equal to the file's own physical line, and a file gone before its evidence is re-read is a problem."""

from __future__ import annotations

from pathlib import Path

import pytest

import exhunt.scan
from exhunt.scan import ScanOptions, scan
from exhunt.synth import FAMILIES, generate
from tests.test_bad_input import build_broken_collection


def _evidence(result) -> list[tuple]:
    return [(f.rule.id, f.host, str(f.group), [(e.path, e.line, e.raw) for e in f.evidence]) for f in result.findings]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "EXCH01-triage"
    generate(root, seed=9, users=6, days=4, plant=frozenset(FAMILIES))
    return root


def test_one_thread_the_default_and_a_case_file_give_the_same_evidence_and_analytics(planted: Path, tmp_path: Path):
    default = scan(planted)
    one = scan(planted, ScanOptions(threads=1))
    kept = scan(planted, ScanOptions(case=tmp_path / "c.duckdb"))
    assert default.verdict == "COMPROMISED"
    assert _evidence(default) == _evidence(one) == _evidence(kept)
    assert [c.to_dict() for c in default.coverage] == [c.to_dict() for c in one.coverage]
    # the default scan reads its records from Parquet files, a case file from its tables: the same answers
    assert [c.to_dict() for c in default.coverage] == [c.to_dict() for c in kept.coverage]
    for section in ("mailbox_access", "timeline", "incident"):  # records differ: a case file keeps every column
        assert _no_records(default.extras.get(section)) == _no_records(kept.extras.get(section)), section


def _no_records(value):
    """An analytics section without its evidence's parsed records (which hold the stored columns) or timings."""
    if isinstance(value, dict):
        return {k: _no_records(v) for k, v in value.items() if k not in ("record", "timings", "seconds")}
    if isinstance(value, list):
        return [_no_records(v) for v in value]
    return value


def test_every_evidence_line_is_the_files_own_line(planted: Path):
    result = scan(planted, ScanOptions(all_evidence=True))
    cache: dict[str, list[bytes]] = {}
    checked = 0
    for f in result.findings:
        for e in f.evidence:
            if e.line is None or e.path.endswith(".evtx"):
                continue
            lines = cache.setdefault(e.path, (planted / e.path).read_bytes().split(b"\n"))
            expected = lines[e.line - 1].removeprefix(b"\xef\xbb\xbf").rstrip(b"\r").decode("utf-8", "backslashreplace")
            assert e.raw == expected, (e.path, e.line)
            checked += 1
    assert checked > 100


def test_a_file_deleted_before_its_evidence_is_read_is_a_problem(collection: Path, monkeypatch):
    build_broken_collection(collection)
    real = exhunt.scan.build_findings
    gone = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"

    def delete_then_build(raw, case, coll):
        (collection / gone).unlink()
        return real(raw, case, coll)

    monkeypatch.setattr(exhunt.scan, "build_findings", delete_then_build)
    result = scan(collection)
    lost = [p for p in result.problems if p.path == gone and p.stage == "evidence"]
    assert lost and all("could not be read again" in p.reason for p in lost)
    assert result.verdict == "COMPROMISED"  # the finding stands on its stored record


def test_an_analysis_that_fails_is_a_problem_and_the_scan_stands(collection: Path, monkeypatch):
    build_broken_collection(collection)

    def broken(*args, **kwargs):
        raise KeyError("odd value in a log")

    monkeypatch.setattr(exhunt.scan, "analyse_case", broken)
    result = scan(collection)
    assert result.verdict == "COMPROMISED"
    assert any(p.path == "(analytics)" and "KeyError" in p.reason for p in result.problems)
