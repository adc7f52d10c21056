"""JSON-lines events read in worker processes are the events read on a thread: same rows, lines,
hashes, errors and findings. Real processes (a fork server), thresholds lowered so that small files
go to them."""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exhunt.ingest as ingest_mod
import exhunt.procread as procread
from exhunt.case import CaseReader
from exhunt.scan import ScanOptions, scan
from exhunt.sources.events import JsonLinesEventSource


def _event(i: int) -> dict:
    if i % 3 == 0:  # a Winlogbeat document, nested
        return {
            "@timestamp": f"2021-03-03T04:{i % 60:02d}:01.000Z",
            "winlog": {
                "channel": "Microsoft-Windows-Sysmon/Operational", "event_id": 1, "record_id": i,
                "provider_name": "Microsoft-Windows-Sysmon", "computer_name": "EXCH01.corp.example",
                "event_data": {"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": f"cmd /c whoami {i}",
                               "ParentImage": "C:\\Windows\\System32\\inetsrv\\w3wp.exe"},
            },
        }  # fmt: skip
    return {  # the flat shape of lab datasets
        "EventID": 4688, "Channel": "Security", "Computer": "EXCH01", "EventRecordID": i,
        "TimeCreated": f"2021-03-03T05:{i % 60:02d}:02Z", "NewProcessName": "C:\\Windows\\System32\\net.exe",
        "CommandLine": f"net group /domain {i}", "ParentProcessName": "C:\\Windows\\System32\\cmd.exe",
    }  # fmt: skip


@pytest.fixture
def events_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "collection" / "EXCH01" / "EventLogs"
    folder.mkdir(parents=True)
    lines = [json.dumps(_event(i)) for i in range(3000)]
    lines[700] = '{"EventID": 4688, "Channel": "Sec'  # a line cut by the export
    (folder / "a.jsonl").write_text("\n".join(lines[:1500]) + "\n", encoding="utf-8")
    (folder / "b.jsonl").write_text("\n".join(lines[1500:]) + "\n" + lines[5][:40], encoding="utf-8")  # cut last line
    (folder / "small.jsonl").write_text(lines[1] + "\n", encoding="utf-8")
    return tmp_path / "collection"


REAL_READ = procread.ProcessReads.read


def _scan(folder: Path, case: Path, processes: bool, monkeypatch) -> tuple[dict, list[str]]:
    used: list[str] = []

    def counted(self, source, local, path, size=0):
        outcome = REAL_READ(self, source, local, path, size)
        if outcome is not None:
            used.append(path)
        return outcome

    monkeypatch.setattr(procread.ProcessReads, "read", counted)
    monkeypatch.setattr(procread, "WORTH_BYTES", 0 if processes else 1 << 60)
    monkeypatch.setattr(procread, "FILE_BYTES", 100_000)
    result = scan(folder, ScanOptions(case=case, threads=2))
    con = CaseReader.open_saved(case)  # row ids follow the order the readers stored rows in: left out
    try:
        events = con.fetch("SELECT * EXCLUDE (_artifact, rowid) FROM events ORDER BY _line, record_id")
        artifacts = con.fetch("SELECT path, sha256, records, log_type FROM artifacts ORDER BY path")
    finally:
        con.close()
    problems = sorted((p.path, p.line, p.reason) for p in result.problems)
    findings = sorted((f.rule.id, f.count, tuple((e.path, e.line) for e in f.evidence)) for f in result.findings)
    return {"events": events, "artifacts": artifacts, "problems": problems, "findings": findings}, used


def test_events_read_in_worker_processes_are_those_read_on_a_thread(events_folder, tmp_path, monkeypatch):
    on_threads, used = _scan(events_folder, tmp_path / "t.duckdb", False, monkeypatch)
    in_processes, used_p = _scan(events_folder, tmp_path / "p.duckdb", True, monkeypatch)
    assert used == [] and sorted(used_p) == [
        "EXCH01/EventLogs/a.jsonl",
        "EXCH01/EventLogs/b.jsonl",
    ]  # not the small one
    assert in_processes == on_threads
    assert len(on_threads["events"]) == 2999 + 1  # one line cut inside: not an event; the small file's one
    shas = {path: sha for path, sha, _, _ in in_processes["artifacts"]}
    for name in ("a.jsonl", "b.jsonl"):
        path = events_folder / "EXCH01" / "EventLogs" / name
        assert shas[f"EXCH01/EventLogs/{name}"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert any("a.jsonl" in p for p, _, _ in on_threads["problems"])  # the cut line is told either way


def test_a_worker_that_cannot_read_its_file_costs_that_file_only(tmp_path):
    """The file vanished between listing and reading: the outcome carries the error, the pool goes on."""
    reads = procread.ProcessReads(1)
    try:
        gone = reads.read(JsonLinesEventSource(), str(tmp_path / "gone.jsonl"), "gone.jsonl")
        assert gone is not None and gone.sha256 is None and gone.error and gone.error[0] == "FileNotFoundError"
        here = tmp_path / "here.jsonl"
        here.write_text(json.dumps(_event(1)) + "\n", encoding="utf-8")
        outcome = reads.read(JsonLinesEventSource(), str(here), "here.jsonl")
        assert outcome is not None and outcome.error is None
        assert [rows.num_rows for _, rows in reads.batches(outcome)] == [1]
    finally:
        reads.close()


def test_a_broken_pool_hands_the_file_back_to_the_thread(tmp_path):
    here = tmp_path / "here.jsonl"
    here.write_text(json.dumps(_event(1)) + "\n", encoding="utf-8")
    reads = procread.ProcessReads(1)
    try:
        assert reads.read(JsonLinesEventSource(), str(here), "here.jsonl") is not None
        for pid in list(reads.pool._processes):  # type: ignore[union-attr]  # a worker killed (out of memory, say)
            os.kill(pid, signal.SIGKILL)
        assert reads.read(JsonLinesEventSource(), str(here), "here.jsonl") is None
        assert reads.broken and not reads.takes(10 << 20, JsonLinesEventSource())
    finally:
        reads.close()


def _daemon_answer(out) -> None:
    out.put(procread.worth_processes([("x.jsonl", 1 << 40)]))


def test_no_worker_processes_inside_a_daemonic_process():
    """A daemonic process may not start processes: its scans read on threads."""
    assert procread.worth_processes([("x.jsonl", 1 << 40)])
    assert not procread.worth_processes([("x.log", 1 << 40), ("y.jsonl", 1 << 10)])
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_daemon_answer, args=(out,), daemon=True)
    child.start()
    try:
        assert out.get(timeout=60) is False
    finally:
        child.join(timeout=60)


def test_scans_read_on_threads_with_little_json_or_one_thread(events_folder, tmp_path, monkeypatch):
    """No pool below the bar of JSON, nor for a scan with a budget of one thread (every fleet task)."""
    made: list[int] = []
    monkeypatch.setattr(ingest_mod, "ProcessReads", lambda n: made.append(n))
    scan(events_folder, ScanOptions(case=tmp_path / "c.duckdb", threads=2))
    monkeypatch.setattr(procread, "WORTH_BYTES", 0)
    scan(events_folder, ScanOptions(case=tmp_path / "d.duckdb", threads=1))
    assert made == []
    scan(events_folder, ScanOptions(case=tmp_path / "e.duckdb", threads=2))
    assert len(made) == 1  # the bar met and two threads: a pool (one worker per reader)


def test_closing_the_pool_stops_a_worker_still_reading(tmp_path):
    """An interrupted scan (Ctrl-C) ends its pool at once, even while a worker reads a big file."""
    import threading
    import time

    big = tmp_path / "big.jsonl"
    line = json.dumps(_event(1)) + "\n"
    big.write_text(line * 400_000, encoding="utf-8")  # some seconds of parsing for one worker
    reads = procread.ProcessReads(1)
    reads.read(JsonLinesEventSource(), str(tmp_path / "none.jsonl"), "none.jsonl")  # the pool is up
    workers = list(reads.pool._processes.values())  # type: ignore[union-attr]
    outcome: list[object] = []
    reading = threading.Thread(target=lambda: outcome.append(reads.read(JsonLinesEventSource(), str(big), "big")))
    reading.start()
    time.sleep(0.5)
    started = time.perf_counter()
    reads.close()
    reading.join(timeout=30)
    assert time.perf_counter() - started < 10 and not reading.is_alive()
    assert outcome == [None]  # handed back: nothing of the file was passed on
    assert not any(w.is_alive() for w in workers)


MESSAGE_4688 = (  # a Security 4688 export that kept only the rendered text
    "A new process has been created.\n\nProcess Information:\n\tNew Process ID:\t\t0x21d0\n"
    "\tNew Process Name:\tC:\\Windows\\System32\\cmd.exe\n\tCreator Process Name:\t"
    "C:\\Windows\\System32\\inetsrv\\w3wp.exe\n\tProcess Command Line:\tcmd /c whoami\n"
)


def _one_big_export(folder: Path) -> Path:
    """One export file with what a stretch boundary could get wrong: bad lines, blank lines, CRLF,
    NUL bytes in two places, message-only events, a cut last line."""
    lines = []
    for i in range(24_000):
        if i % 1000 == 7:
            lines.append('{"EventID": 4688, "Chan')  # cut by the export
        elif i % 1000 == 9:
            lines.append("")
        elif i % 500 == 3:
            lines.append(json.dumps({"EventID": 4688, "Channel": "Security", "Computer": "EXCH01",
                                     "TimeCreated": "2021-03-03T04:00:00Z", "Message": MESSAGE_4688}))  # fmt: skip
        else:
            lines.append(json.dumps(_event(i)) + ("\r" if i % 7 == 0 else ""))
    lines[5000] = lines[5000][:20] + "\x00\x00" + lines[5000][20:]
    lines[19000] = "\x00" * 8
    path = folder / "export.jsonl"
    path.write_text("\ufeff" + "\n".join(lines) + "\n" + json.dumps(_event(1))[:30], encoding="utf-8")  # a BOM
    return path


def test_one_big_file_read_in_stretches_is_the_file_read_whole(tmp_path, monkeypatch):
    """A big line-independent file is cut across the workers; the joined outcome is what one
    worker reading it whole gives: batches, lines, offsets, errors, notes, records and hash."""
    path = _one_big_export(tmp_path)
    size = path.stat().st_size
    monkeypatch.setattr(procread, "SPLIT_BYTES", 1 << 20)
    stretches = procread.cut_in_stretches(str(path), 3)[1]
    assert len(stretches) == 3 and stretches[0].start == 0 and stretches[-1].end == size
    data = path.read_bytes()
    for s in stretches:
        assert data[s.start - 1 : s.start] in (b"", b"\n")  # cut just after a line end
        assert s.first_line == data.count(b"\n", 0, s.start) + 1

    def read(workers: int) -> tuple:
        reads = procread.ProcessReads(workers)
        try:
            outcome = reads.read(JsonLinesEventSource(), str(path), "export.jsonl", size)
            assert outcome is not None and outcome.error is None
            rows = [r for _, part in reads.batches(outcome) for r in part.to_pylist()]
        finally:
            reads.close()
        info = outcome.info
        for line, offset in info.runs:  # each run names where its first line starts (evidence seeks there)
            assert data[offset - 1 : offset] == b"\n" or offset == (3 if data.startswith(b"\xef\xbb\xbf") else 0)
            assert data.count(b"\n", 0, offset) + 1 == line
        return outcome.sha256, rows, sorted(info.errors), info.notes, info.records, info.log_type  # errors: any order

    whole, parts = read(1), read(3)
    assert parts == whole
    sha, rows, errors, notes, records, log_type = whole
    assert sha == hashlib.sha256(data).hexdigest()
    assert [r["_line"] for r in rows] == sorted(r["_line"] for r in rows) and records == len(rows) > 20_000
    assert sum("NUL bytes" in e for _, e in errors) == 1 and sum("not a JSON object" in e for _, e in errors) >= 24
    assert log_type == "JSON lines (message-only)" and sum("parsed from the rendered Message" in n for n in notes) == 1
    assert errors[-1][0] == data.count(b"\n") + 1  # the cut last line, told at its own number
    assert sum(f"(line {errors[-1][0]}) has no line end" in n for n in notes) == 1


def test_a_file_with_too_few_line_ends_is_not_cut_where_no_line_ends(tmp_path):
    """One long line and a short one: the cut falls after the only line end, or not at all."""
    path = tmp_path / "long.jsonl"
    path.write_bytes(json.dumps({"EventID": 1, "Channel": "x", "pad": "a" * 3_000_000}).encode() + b"\n{}\n")
    sha, stretches = procread.cut_in_stretches(str(path), 4)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [(s.start, s.first_line) for s in stretches][:1] == [(0, 1)] and stretches[-1].end == path.stat().st_size
    assert all(b.start == a.end for a, b in itertools.pairwise(stretches))


def test_a_big_file_is_cut_only_while_no_other_file_is_in_the_pool(tmp_path, monkeypatch):
    """With another file in the pool's hands, one worker a file keeps the workers busy: no cuts."""
    path = _one_big_export(tmp_path)
    monkeypatch.setattr(procread, "SPLIT_BYTES", 1 << 20)
    cut: list[str] = []
    real = procread.cut_in_stretches
    monkeypatch.setattr(procread, "cut_in_stretches", lambda p, n: (cut.append(p), real(p, n))[1])
    reads = procread.ProcessReads(2)
    try:
        reads.reading = 1  # another reader thread's file is in the pool
        busy = reads.read(JsonLinesEventSource(), str(path), "export.jsonl", path.stat().st_size)
        assert busy is not None and busy.error is None and cut == [] and reads.reading == 1
        reads.reading = 0
        alone = reads.read(JsonLinesEventSource(), str(path), "export.jsonl", path.stat().st_size)
        assert alone is not None and cut == [str(path)] and alone.info.records == busy.info.records
    finally:
        reads.close()


def test_a_failed_stretch_ends_the_file_there_as_on_a_thread():
    """An error in one stretch: its batches and those before it stand, the later ones are dropped,
    and the file has no hash (it was not read to the end)."""
    from exhunt.sources.base import ArtifactInfo

    def part(records: int, batches: list[str], error: tuple[str, str] | None = None) -> procread.Outcome:
        info = ArtifactInfo("export.jsonl", "events", "JSON lines", records=records, runs=[(records, records)])
        return procread.Outcome(info, None, [("events", b) for b in batches], error)

    out = procread.joined([part(3, ["a"]), part(2, ["b"], ("OSError", "gone")), part(4, ["c"])], "sha")
    assert [b for _, b in out.batches] == ["a", "b"] and out.info.records == 5
    assert out.error == ("OSError", "gone") and out.sha256 is None and out.info.runs == [(3, 3), (2, 2)]
    whole = procread.joined([part(3, ["a"]), part(4, ["c"])], "sha")
    assert whole.error is None and whole.sha256 == "sha" and whole.info.records == 7


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([b"\n", b"x" * 40, b"\r\n", b"y" * 3000, b"\x00", b""]), max_size=200),
    st.integers(min_value=2, max_value=5),
    st.integers(min_value=64, max_value=4096),
)
def test_stretches_cover_the_file_in_whole_lines_for_any_bytes(tmp_path_factory, pieces, parts, block):
    """Whatever the bytes and the block size: the stretches follow each other from the first byte to
    the last, each starts just after a line end, and each knows its first line's number."""
    path = tmp_path_factory.mktemp("cut") / "f.jsonl"
    data = b"".join(pieces)
    path.write_bytes(data)
    procread_block = procread.CHUNK_BYTES
    procread.CHUNK_BYTES = block  # small blocks: the cuts fall at and across block ends
    try:
        sha, stretches = procread.cut_in_stretches(str(path), parts)
    finally:
        procread.CHUNK_BYTES = procread_block
    assert sha == hashlib.sha256(data).hexdigest()
    assert len(stretches) <= parts and (not data or (stretches[0].start == 0 and stretches[-1].end == len(data)))
    for a, b in itertools.pairwise(stretches):
        assert a.end == b.start and data[b.start - 1 : b.start] == b"\n"
    for st_ in stretches:
        assert st_.first_line == data.count(b"\n", 0, st_.start) + 1 and st_.end > st_.start


def test_a_big_file_that_cannot_be_cut_costs_that_file_only(tmp_path, monkeypatch):
    """A big file gone before the thread could hash it: the worker says why, and the pool stays up
    for the files after it (it is the file's problem, not the pool's)."""
    monkeypatch.setattr(procread, "SPLIT_BYTES", 1 << 20)
    reads = procread.ProcessReads(2)
    try:
        gone = reads.read(JsonLinesEventSource(), str(tmp_path / "gone.jsonl"), "gone.jsonl", 64 << 20)
        assert gone is not None and gone.sha256 is None and gone.error and gone.error[0] == "FileNotFoundError"
        assert not reads.broken and reads.takes(64 << 20, JsonLinesEventSource())
    finally:
        reads.close()
