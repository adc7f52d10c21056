"""Acceptance (issue 9): a copy of the `--plant all` collection with every log damaged at a random point
(cut short, junk written over a stretch, or a NUL run), junk files beside them and an inner zip, still
yields every required trace that lies before the damage, names every damaged file, and never says
NO EVIDENCE FOUND."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from exhunt.scan import ScanOptions, scan
from tests.test_end_to_end import located

DAMAGES = ("truncate", "junk", "nul")


def _damage(path: Path, kind: str, rng: random.Random) -> int:
    """Damage the file from a random point in its second half (never at a line start, so a cut is
    visible); return that byte offset."""
    data = path.read_bytes()
    at = rng.randrange(len(data) // 2, len(data) - 2)
    while at < len(data) - 2 and data[at - 1 : at] == b"\n":
        at += 1
    if kind == "truncate":
        path.write_bytes(data[:at])
    elif kind == "junk":  # bytes that are not UTF-8 and not a log line, over up to 400 bytes
        junk = bytes(rng.choice(b"\xff\xfe\xc3\x80\x9d\x00abc,\t ") for _ in range(min(400, len(data) - at)))
        path.write_bytes(data[:at] + junk + data[at + len(junk) :])
    else:
        run = min(4096, len(data) - at)
        path.write_bytes(data[:at] + b"\0" * run + data[at + run :])
    return at


def _line_ends(data: bytes) -> list[int]:
    """Byte offset just past each line (1-based line n ends at [n - 1])."""
    ends, pos = [], 0
    for line in data.split(b"\n"):
        pos += len(line) + 1
        ends.append(pos)
    return ends


@pytest.fixture(scope="module")
def damaged(planted_collection, tmp_path_factory):
    src, key = planted_collection
    root = tmp_path_factory.mktemp("damaged") / "EXCH01-triage"
    shutil.copytree(src, root)
    rng = random.Random(20210302)
    logs = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in (".log", ".ndjson") and p.stat().st_size > 512
    )  # fmt: skip
    at: dict[str, tuple[str, int, list[int]]] = {}
    for i, path in enumerate(logs):
        rel = path.relative_to(root).as_posix()
        ends = _line_ends(path.read_bytes())
        kind = DAMAGES[i % len(DAMAGES)]
        at[rel] = (kind, _damage(path, kind, rng), ends)
    (root / "junk.log").write_bytes(bytes(rng.randrange(256) for _ in range(5000)))
    (root / "EXCH01" / "not-an-event-log.evtx").write_bytes(
        b"ElfFile\0" + bytes(rng.randrange(256) for _ in range(3000))
    )
    assert any(p.suffix == ".zip" for p in root.rglob("*")), "the collection should hold an inner zip"
    result = scan(root, ScanOptions(all_evidence=True))
    return key, at, result.to_dict(), result


def test_every_trace_before_the_damage_is_still_found(damaged):
    key, at, _, result = damaged
    found = {(rule, path, line) for rule, path, line in located(result)}
    kept = 0
    missed = []
    for t in key["traces"]:
        if not t["required"] or t["line"] is None:
            continue
        if t["path"] in at:
            _, offset, ends = at[t["path"]]
            if ends[t["line"] - 1] > offset:  # at or after the damage: not required
                continue
        kept += 1
        if (t["rule"], t["path"], t["line"]) not in found:
            missed.append(f"{t['rule']} {t['path']}:{t['line']}")
    assert kept > 100, f"only {kept} traces lie before the damage: the test would prove little"
    assert not missed, "\n".join(missed)
    assert result.verdict != "NO EVIDENCE FOUND" and result.exit_code != 0


def test_every_damaged_file_is_named(damaged):
    _, at, doc, _ = damaged
    said = [(e.get("path") or "") + " " + (e.get("reason") or "") for e in doc["errors"]]
    said += [str(n) for n in doc.get("notes") or []]
    unnamed = [f"{rel} ({kind})" for rel, (kind, _, _) in at.items() if not any(rel in s for s in said)]
    assert not unnamed, "\n".join(unnamed)
    assert any("junk.log" in s for s in said) and any("not-an-event-log.evtx" in s for s in said)
