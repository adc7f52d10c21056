"""Acceptance of the mailbox-access model: on a synthetic server with K mailboxes taken by each path
among 300 users, exactly those mailboxes are flagged, with the right path, first and last time,
operations and bytes (within 1%); the heavy legitimate readers are not; the same holds on a second
seed and without the IIS logs; thin collections say which paths they could not check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from exhunt.scan import ScanOptions, scan
from exhunt.synth import generate

FLAGGED = ("taken", "abnormal")


def _collection(tmp: Path, seed: int) -> tuple[Path, dict[str, Any]]:
    root = tmp / "EXCH01-triage"
    key = generate(root, seed=seed, users=300, days=2, plant=frozenset({"theft"}), target_mb=25)
    return root, key


def _flagged(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(mailbox local part, path) -> summed operations, bytes, first, last, accessors of flagged sessions."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for s in doc["mailbox_access"]["sessions"]:
        if s["verdict"] not in FLAGGED:
            continue
        g = out.setdefault(
            (s["mailbox_key"], s["path"]),
            {"operations": {}, "bytes": 0, "first": s["first"], "last": s["last"], "accessors": set()},
        )
        for op, n in s["operations"].items():
            g["operations"][op] = g["operations"].get(op, 0) + n
        g["bytes"] += s["bytes"] or 0
        g["first"], g["last"] = min(g["first"], s["first"]), max(g["last"], s["last"])
        g["accessors"].add(s["accessor"])
    return out


def _expected(key: dict[str, Any], *, paths: set[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (a["mailbox"].split("@")[0], a["path"]): a
        for a in key["mailbox_theft"]["taken"]
        if paths is None or a["path"] in paths
    }


def _check(doc: dict[str, Any], expected: dict[tuple[str, str], dict[str, Any]]) -> None:
    got = _flagged(doc)
    assert set(got) == set(expected), (sorted(set(got) - set(expected)), sorted(set(expected) - set(got)))
    for k, want in expected.items():
        g = got[k]
        assert g["operations"] == want["operations"], (k, g["operations"], want["operations"])
        assert abs(g["bytes"] - want["bytes"]) <= 0.01 * want["bytes"], (k, g["bytes"], want["bytes"])
        assert g["first"][:19] == want["first"][:19] and g["last"][:19] == want["last"][:19], (k, g, want)
        assert want["accessor"] in g["accessors"], (k, g["accessors"], want["accessor"])
    flagged_mailboxes = {f["group"]["mailbox"].split("@")[0] for f in doc["mailbox_access"]["findings"]}
    assert flagged_mailboxes == {k[0] for k in expected}


@pytest.fixture(scope="module")
def theft(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    root, key = _collection(tmp_path_factory.mktemp("theft"), seed=3)
    return root, key, scan(root, ScanOptions()).to_dict()


def test_every_path_is_planted_k_times_among_300_users(theft):
    _, key, _ = theft
    by_path: dict[str, set[str]] = {}
    for a in key["mailbox_theft"]["taken"]:
        by_path.setdefault(a["path"], set()).add(a["mailbox"])
    assert set(by_path) == {
        "ssrf-ews", "stolen-credentials", "export-cmdlet", "export-file-download", "forwarding", "delegate/permission",
    }  # fmt: skip
    assert {len(v) for k, v in by_path.items() if k != "export-cmdlet"} == {3}
    assert key["mailbox_theft"]["legitimate_readers"], "no heavy legitimate reader planted"


def test_exactly_the_stolen_mailboxes_with_path_times_operations_and_bytes(theft):
    _, key, doc = theft
    _check(doc, _expected(key))
    assert all(c["status"] == "checked" for c in doc["mailbox_access"]["coverage"]), doc["mailbox_access"]["coverage"]


def test_heavy_legitimate_readers_are_recognised_by_steadiness_not_flagged(theft):
    _, key, doc = theft
    legit = {r["accessor"] for r in key["mailbox_theft"]["legitimate_readers"]}
    flagged = {s["accessor"] for s in doc["mailbox_access"]["sessions"] if s["verdict"] in FLAGGED}
    assert not legit & flagged
    readers = {r["accessor"]: r for r in doc["mailbox_access"]["readers"]}
    archiver = next(r for r in key["mailbox_theft"]["legitimate_readers"] if r["mailboxes"] > 100)
    assert readers[archiver["accessor"]]["mailboxes"] == archiver["mailboxes"]
    assert legit <= set(readers)


def test_findings_are_shaped_like_the_result_findings(theft):
    _, _, doc = theft
    found = doc["mailbox_access"]["findings"]
    assert found and {f["rule"] for f in found} == {"analytics-mailbox-taken", "analytics-mailbox-abnormal-read"}
    for f in found:
        assert set(f) >= {"rule", "title", "severity", "kind", "cves", "attack", "host", "group", "first_seen",
                          "last_seen", "count", "note", "evidence"}  # fmt: skip
        assert f["evidence"] and all(e["path"] and e["line"] for e in f["evidence"])
        assert all(e["record"] for e in f["evidence"]), "evidence without its parsed record"
    ssrf = [f for f in found if "ssrf-ews" in f["group"]["paths"]]
    assert ssrf and all(f["severity"] == "critical" for f in ssrf)


def test_the_ssrf_row_and_the_ews_row_it_caused_are_one_access(theft):
    _, _, doc = theft
    ssrf = [s for s in doc["mailbox_access"]["sessions"] if s["path"] == "ssrf-ews"]
    for s in ssrf:
        sources = {e["source"] for e in s["evidence"]}
        assert sources == {"ews", "httpproxy"}, sources
        assert s["client_ip"] == "130.255.189.21"  # from the front end, not the back end's own address


def test_second_seed(tmp_path):
    root, key = _collection(tmp_path, seed=11)
    _check(scan(root, ScanOptions()).to_dict(), _expected(key))


def test_without_iis_logs_the_same_mailboxes_and_the_download_path_is_reported_unchecked(theft, tmp_path):
    src, key, _ = theft
    root = tmp_path / "EXCH01-triage"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("LogFiles"))
    assert not (root / "EXCH01" / "C" / "inetpub" / "logs" / "LogFiles").exists()
    doc = scan(root, ScanOptions()).to_dict()
    _check(doc, _expected(key, paths=set(key["mailbox_theft"]["paths"]) - {"export-file-download"}))
    cov = {c["path"]: c for c in doc["mailbox_access"]["coverage"]}
    assert cov["export-file-download"]["status"] == "not checked" and "IIS" in cov["export-file-download"]["reason"]


def test_ews_logs_without_httpproxy_still_show_the_ews_accesses(tmp_path):
    root, key = _collection(tmp_path, seed=5)
    shutil.rmtree(
        root / "EXCH01" / "C" / "Program Files" / "Microsoft" / "Exchange Server" / "V15" / "Logging" / "HttpProxy"
    )
    doc = scan(root, ScanOptions()).to_dict()
    got = _flagged(doc)
    for k, want in _expected(key, paths={"ssrf-ews", "stolen-credentials"}).items():
        assert k in got and got[k]["operations"] == want["operations"], k
    cov = {c["path"]: c for c in doc["mailbox_access"]["coverage"]}
    assert cov["ssrf-ews"]["status"] == "partial" and "HttpProxy" in cov["ssrf-ews"]["reason"]


def test_only_cmdlet_events_still_give_the_exports_and_say_what_was_not_checked(theft, tmp_path):
    src, key, _ = theft
    root = tmp_path / "events-only"
    (root / "EXCH01" / "EventLogs").mkdir(parents=True)
    for f in (src / "EXCH01" / "EventLogs").iterdir():
        shutil.copy(f, root / "EXCH01" / "EventLogs" / f.name)
    doc = scan(root, ScanOptions()).to_dict()
    got = _flagged(doc)
    exports = {k for k in _expected(key) if k[1] == "export-cmdlet"}
    assert exports and exports <= set(got)
    assert {k[1] for k in got} <= {"export-cmdlet", "forwarding"}
    cov = {c["path"]: c["status"] for c in doc["mailbox_access"]["coverage"]}
    assert cov["export-cmdlet"] == "checked"
    assert cov["ssrf-ews"] == cov["stolen-credentials"] == cov["export-file-download"] == "not checked"
    json.dumps(doc)  # the whole document stays serialisable


def test_accounts_and_addresses_seen_only_through_the_pivot_are_leads(theft):
    _, key, doc = theft
    thief = "198.51.100.77"
    pivots = [e for e in doc["timeline"] if e["kind"] == "pivot"]
    assert any(thief in e["ties"].get("ips", []) for e in pivots)
    taken = [s for s in doc["mailbox_access"]["sessions"] if s["verdict"] == "taken"]
    seeds = {s["client_ip"] for s in taken} | {s["accessor"] for s in taken}
    assert doc["leads"], "no lead from the pivot"
    # the stolen account reading others' mailboxes is seen from the thief's address: a lead
    stolen = {a["accessor"] for a in key["mailbox_theft"]["taken"] if a["path"] == "stolen-credentials"}
    assert stolen <= {x["value"] for x in doc["leads"] if x["kind"] == "account"}
    for lead in doc["leads"]:
        assert lead["value"] not in seeds and lead["evidence"] and lead["via"], lead
