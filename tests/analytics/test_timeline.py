"""The timeline of the synthetic HAFNIUM collection: exploitation, shell written, shell used, dump,
staging, theft in that order, the attacker's other records pivoted in, every entry pointing at its
evidence; the incident summary and `exhunt timeline CASE` on the same case."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from exhunt.cli import app
from exhunt.scan import ScanOptions, scan
from exhunt.synth import generate

STAGES = [
    ("exploitation", {"proxylogon-ssrf-anchor", "proxylogon-ecp-js-post"}, "initial access"),
    ("shell written", {"file-event-webshell-write"}, "persistence"),
    ("shell used", {"webshell-access", "process-webserver-shell"}, "execution"),
    ("dump", {"process-lsass-dump"}, "credential access"),
    ("staging", {"process-archive-staging"}, "collection"),
    ("theft", {"analytics-mailbox-taken"}, "collection"),
]


@pytest.fixture(scope="module")
def hafnium(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("hafnium")
    root = tmp / "EXCH01-triage"
    key = generate(root, seed=2, users=20, days=3, start=date(2021, 3, 2), plant=frozenset({"proxylogon"}))
    case = tmp / "case.duckdb"
    return key, scan(root, ScanOptions(case=case)).to_dict(), case


def test_the_story_runs_exploitation_shell_dump_staging_theft_in_order(hafnium):
    _, doc, _ = hafnium
    entries = [e for e in doc["timeline"] if e["host"] == "EXCH01"]
    firsts = []
    for name, rules, phase in STAGES:
        hits = [e for e in entries if e["rule"] in rules]
        assert hits, f"no timeline entry for {name}"
        assert all(e["phase"] == phase for e in hits), (name, {e["phase"] for e in hits})
        firsts.append(min(e["time"] for e in hits))
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts), list(
        zip([s[0] for s in STAGES], firsts, strict=True)
    )
    assert [e["time"] for e in entries] == sorted(e["time"] for e in entries)


def test_every_entry_points_at_its_evidence(hafnium):
    _, doc, _ = hafnium
    for e in doc["timeline"]:
        assert e["evidence"] and all(x["path"] for x in e["evidence"]), e
        if e["kind"] in ("pivot", "mailbox"):
            assert all(isinstance(x["line"], int) for x in e["evidence"]), e


def test_the_attackers_other_records_are_pivoted_in(hafnium):
    key, doc, _ = hafnium
    pivots = [e for e in doc["timeline"] if e["kind"] == "pivot"]
    assert pivots
    attacker = set(key["attacker_ips"].values())
    assert any(set(e["ties"].get("ips", [])) & attacker for e in pivots)
    assert all("pivot on" in e["title"] for e in pivots)


def test_incident_summary_names_shells_dump_and_the_stolen_mailbox(hafnium):
    key, doc, _ = hafnium
    inc = doc["incident"]
    assert set(key["attacker_ips"].values()) <= set(inc["attacker_ips"])
    assert "10.10.1.20" not in inc["attacker_ips"]  # the server's own address is never the attacker's
    shells = {s["path"].rsplit("/", 1)[-1]: s["status"] for s in inc["shells"]}
    assert shells.get("RedirSuiteServerProxy.aspx") == "used"
    assert any(p.endswith("lsass.dmp") for p in inc["credentials_at_risk"]["dumps"])
    stolen = key["mailbox_theft"]["taken"]
    assert [m["mailbox"] for m in inc["mailboxes_taken"]] == [key["executive_mailbox"]]
    assert inc["mailboxes_taken"][0]["bytes"] == sum(a["bytes"] for a in stolen)
    assert inc["first_malicious"] <= inc["last_malicious"]
    assert any("Rotate" in t for t in inc["what_to_do"]) and any("Patch" in t for t in inc["what_to_do"])


def test_timeline_command_reads_the_case(hafnium):
    _, _, case = hafnium
    res = CliRunner().invoke(app, ["timeline", str(case)])
    assert res.exit_code == 0, res.output
    assert "incident" in res.output and "timeline · EXCH01" in res.output
    assert "credential access" in res.output
    res = CliRunner().invoke(app, ["query", str(case), "SELECT count(*) AS n FROM mailbox_access"])
    assert res.exit_code == 0 and "1" in res.output


def test_timeline_command_refuses_a_file_that_is_not_a_case(tmp_path):
    bogus = tmp_path / "x.duckdb"
    bogus.write_text("not a database")
    res = CliRunner().invoke(app, ["timeline", str(bogus)])
    assert res.exit_code == 2 and "error" in res.output
