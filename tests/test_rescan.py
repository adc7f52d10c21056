"""Incremental rescan (exhunt.rescan): a kept case updated with only the new, changed and removed files
gives the findings, evidence, coverage and verdict of a full scan of the grown collection."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from pathlib import Path

import pytest

from exhunt.fleet.state import changed_files, fingerprint
from exhunt.fleet.task import _rules
from exhunt.rescan import Rescan
from exhunt.scan import ScanOptions, scan
from exhunt.synth import generate

W3SVC1 = "C/inetpub/logs/LogFiles/W3SVC1"
ATTACK = (
    "2021-02-26 03:14:15 10.10.1.20 GET /autodiscover/autodiscover.json "
    "@evil.example/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.example 443 - 203.0.113.66 "
    "python-requests/2.25.1 - 200 0 0 31"
)


def _options(case: Path, rescan: Rescan | None = None) -> ScanOptions:
    return ScanOptions(case=case, threads=1, workers=1, rules=_rules(), analytics=True, rescan=rescan)


def _comparable(doc: dict) -> dict:
    """The result without what differs by design: timings, the case path, the bytes read this run."""
    doc = copy.deepcopy(doc)
    doc.pop("case")
    doc.pop("stats")
    for key in ("seconds", "timings"):
        (doc.get("incident") or {}).pop(key, None)
    return json.loads(json.dumps(doc, default=str, sort_keys=True))


def _plan(host: Path, fp: dict, previous: dict) -> Rescan:
    changes = changed_files(host, fp)
    return Rescan(
        [c for c in changes if not c.startswith("-")], [c[1:] for c in changes if c.startswith("-")],
        previous["errors"], previous["notes"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def benign_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rescan")
    generate(root, seed=3, users=1, days=2, benign_only=True, host="EXCH01")
    return root / "EXCH01"


def test_rescan_reads_only_new_and_changed_files_and_equals_a_full_scan(benign_host: Path, tmp_path: Path):
    host = tmp_path / "EXCH01"
    shutil.copytree(benign_host, host)
    kept = tmp_path / "kept.duckdb"
    first = scan(host, _options(kept)).to_dict()
    assert first["verdict"] == "NO EVIDENCE FOUND"
    fp = fingerprint(host)

    w3 = host / W3SVC1
    header = "".join(line for line in (w3 / "u_ex210225.log").open() if line.startswith("#"))
    new = w3 / "u_ex210226.log"
    new.write_text(header.replace("2021-02-25", "2021-02-26") + ATTACK + "\n")
    grown = host / "C/inetpub/logs/LogFiles/W3SVC2/u_ex210225.log"
    grown.write_text(grown.read_text() + grown.read_text().splitlines(True)[-1])
    gone = w3 / "u_ex210224.log"
    gone.unlink()

    plan = _plan(host, fp, first)
    assert sorted(plan.changed) == sorted([new.relative_to(host).as_posix(), grown.relative_to(host).as_posix()])
    assert plan.removed == [gone.relative_to(host).as_posix()]
    again = scan(host, _options(kept, plan)).to_dict()
    full = scan(host, _options(tmp_path / "full.duckdb")).to_dict()

    assert again["stats"]["bytes_read"] == new.stat().st_size + grown.stat().st_size
    assert again["stats"]["artifacts"] == full["stats"]["artifacts"]
    assert again["stats"]["records"] == full["stats"]["records"]
    assert full["verdict"] == "COMPROMISED" and full["findings"]
    assert _comparable(again) == _comparable(full)
    # nothing changed since: the kept case is read by no one and still gives the same answer
    idle = scan(host, _options(kept, Rescan([], [], again["errors"], again["notes"]))).to_dict()
    assert idle["stats"]["bytes_read"] == 0
    assert _comparable(idle) == _comparable(full)


def test_a_host_read_in_shards_and_merged_equals_a_one_task_scan(benign_host: Path, tmp_path: Path):
    from exhunt.fleet.split import host_files, merge_shards, read_shard, shard_ranges

    sizes = host_files(benign_host)
    ranges = shard_ranges(sizes, 3)
    assert len(ranges) == 3 and ranges[0][0] == 0 and ranges[-1][1] == len(sizes)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    shards = [
        read_shard({"path": str(benign_host), "shard": str(tmp_path / f"s{i}.duckdb"), "range": r})
        for i, r in enumerate(ranges)
    ]
    plan = merge_shards(tmp_path / "merged.duckdb", shards)
    assert not any(tmp_path.glob("s*.duckdb"))
    merged = scan(benign_host, _options(tmp_path / "merged.duckdb", Rescan(**plan))).to_dict()
    whole = scan(benign_host, _options(tmp_path / "whole.duckdb")).to_dict()
    assert merged["stats"]["bytes_read"] == 0  # nothing read again after the shards
    assert sum(s["bytes_read"] for s in shards) == whole["stats"]["bytes_read"]
    assert whole["findings"] and _comparable(merged) == _comparable(whole)
