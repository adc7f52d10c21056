"""Acceptance for the message-only export shapes: the `--plant all` collection, with every event kept
only as its rendered Message, gives the same event-rule findings (same evidence file and line) as the
structured Winlogbeat original, and a Sigma rule matches the same events in both forms; its Sentinel
CSV form (SecurityEvent columns, message-only Event rows) finds every event trace at its CSV line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exhunt.rules.model import load_rules
from exhunt.scan import ScanOptions, ScanResult, scan
from exhunt.sources.message_fields import layout_for
from exhunt.synth import FAMILIES, generate
from exhunt.synth.shape_message_only import write_message_only
from exhunt.synth.shape_sentinel_events import write_sentinel_events
from tests.conftest import SHARED

EVENT_SOURCES = ("events", "cmdlet")  # cmdlet rules read the MSExchange Management events too
SIGMA_RULES = (
    "rules/windows/process_creation/proc_creation_win_webshell_susp_process_spawned_from_webserver.yml",
    "rules/windows/builtin/msexchange/win_exchange_proxylogon_oabvirtualdir.yml",
    "rules/windows/builtin/msexchange/win_exchange_proxyshell_mailbox_export.yml",
)


def sigma_files() -> list[Path]:
    root = SHARED / "data" / "sigma"
    return [root / r for r in SIGMA_RULES if (root / r).exists()]


EVENT_RULES = [r for r in load_rules() if r.source in EVENT_SOURCES]  # the web and file rules read no event
OPTIONS = ScanOptions(rules=EVENT_RULES, analytics=False, all_evidence=True, sigma=sigma_files() or None)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, ScanResult]:
    root = tmp_path_factory.mktemp("message-only") / "original" / "EXCH01-triage"
    key = generate(root, seed=3, users=6, days=7, plant=frozenset(FAMILIES))
    return key, root, scan(root, OPTIONS)


@pytest.fixture(scope="module")
def shapes(original) -> tuple[dict, Path, ScanResult, ScanResult]:
    key, root, result = original
    message_only = root.parent.parent / "message-only" / "EXCH01-triage"
    done = write_message_only(root, message_only)
    assert done["events"] > 1000 and done["event_files"] >= 6
    return key, message_only, result, scan(message_only, OPTIONS)


def rule_counts(result: ScanResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in result.findings:
        if f.rule.source in EVENT_SOURCES:
            out[f.rule.id] = out.get(f.rule.id, 0) + f.count
    return out


def event_evidence(result: ScanResult, prefix: str = "") -> dict[str, set[tuple[str, int | None]]]:
    out: dict[str, set[tuple[str, int | None]]] = {}
    for f in result.findings:
        if f.rule.id.startswith(prefix) and f.rule.source in EVENT_SOURCES:
            out.setdefault(f.rule.id, set()).update((e.path, e.line) for e in f.evidence)
    return out


def test_the_shape_keeps_no_structured_field(shapes):
    _, root, _, _ = shapes
    lines = (root / "EXCH01/EventLogs/winlogbeat-sysmon.ndjson").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert set(first) == {
        "TimeCreated",
        "Computer",
        "Channel",
        "ProviderName",
        "EventID",
        "Level",
        "RecordNumber",
        "Message",
    }
    assert "\nImage: " in first["Message"]


def test_every_required_event_trace_is_found_in_the_message_only_shape(shapes):
    key, _, original, message_only = shapes
    found = {(f.rule.id, e.path, e.line) for f in message_only.findings for e in f.evidence}
    events = [t for t in key["traces"] if t["required"] and t["path"].endswith(".ndjson")]
    assert len(events) > 40
    missed = [t for t in events if (t["rule"], t["path"], t["line"]) not in found]
    assert not missed, "\n".join(f"{t['rule']} {t['path']}:{t['line']}" for t in missed)
    assert message_only.verdict == original.verdict == "COMPROMISED"


def test_event_rules_give_the_same_evidence_on_both_shapes(shapes):
    _, _, original, message_only = shapes
    before, after = event_evidence(original), event_evidence(message_only)
    assert len(before) > 30
    assert after == before
    assert rule_counts(message_only) == rule_counts(original)


def test_message_only_provenance_is_recorded(shapes):
    _, _, _, message_only = shapes
    notes = [n for n in message_only.to_dict()["notes"] if "parsed from the rendered Message" in n["reason"]]
    assert {n["path"] for n in notes} >= {
        "EXCH01/EventLogs/winlogbeat-security.ndjson",
        "EXCH01/EventLogs/winlogbeat-sysmon.ndjson",
    }
    assert layout_for("Security", "Microsoft-Windows-Security-Auditing", 4769) is None  # not claimed


def test_sigma_rules_match_the_same_events_in_both_shapes(shapes):
    if not sigma_files():
        pytest.skip("the shared Sigma subset (../shared/data/sigma) is absent")
    _, _, original, message_only = shapes
    before, after = event_evidence(original, "sigma:"), event_evidence(message_only, "sigma:")
    assert before, "no shared Sigma rule matched the structured events"
    assert after == before


def test_sentinel_csv_shape_finds_every_event_trace_at_its_csv_line(original):
    _, root, structured = original
    sentinel = root.parent.parent / "sentinel" / "EXCH01-triage"
    done = write_sentinel_events(root, sentinel)
    assert done["event_files"] >= 6
    key = json.loads((sentinel / "answer_key.json").read_text(encoding="utf-8"))
    result = scan(sentinel, OPTIONS)  # the same rules as the structured scan, Sigma too
    found = {(f.rule.id, e.path, e.line) for f in result.findings for e in f.evidence}
    events = [t for t in key["traces"] if t["required"] and t["path"].endswith(".csv")]
    assert len(events) > 40
    missed = [t for t in events if (t["rule"], t["path"], t["line"]) not in found]
    assert not missed, "\n".join(f"{t['rule']} {t['path']}:{t['line']}" for t in missed)
    assert rule_counts(result) == rule_counts(structured)
    assert not result.errors, result.errors
