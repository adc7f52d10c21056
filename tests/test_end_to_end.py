"""Acceptance: every trace planted by the generator is found at its path and line; the same server
without attacks is clean; benign look-alikes never produce a high or critical finding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exhunt.scan import ScanOptions, ScanResult, scan
from exhunt.synth import generate

SEVERE = ("high", "critical")


def located(result: ScanResult) -> dict[tuple[str, str, int | None], str]:
    """(rule, path, line) -> severity for every evidence record of every finding."""
    out = {}
    for f in result.findings:
        for e in f.evidence:
            out[(f.rule.id, e.path, e.line)] = f.severity
    return out


@pytest.fixture(scope="module")
def planted(planted_collection: tuple[Path, dict]) -> tuple[dict, ScanResult]:
    root, key = planted_collection
    assert json.loads((root / "answer_key.json").read_text()) == json.loads(json.dumps(key))
    return key, scan(root, ScanOptions(all_evidence=True))


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, ScanResult]:
    root = tmp_path_factory.mktemp("synth-benign") / "EXCH01-triage"
    key = generate(root, seed=5, users=12, days=16, benign_only=True)
    return key, scan(root, ScanOptions(all_evidence=True))


def test_every_planted_trace_is_found_at_its_path_and_line(planted):
    key, result = planted
    found = located(result)
    missed = [t for t in key["traces"] if t["required"] and (t["rule"], t["path"], t["line"]) not in found]
    assert key["traces"], "the generator planted nothing"
    assert not missed, "\n".join(f"{t['rule']} {t['path']}:{t['line']} ({t['description']})" for t in missed)
    assert result.verdict == "COMPROMISED" and result.exit_code == 1


def test_one_request_in_both_logs_is_one_finding_with_evidence_from_each(planted):
    key, result = planted
    both = [t for t in key["traces"] if t["required"] and t.get("seen_in")]
    assert both, "the answer key names no request seen in two web logs"
    for trace in both:
        where = {(trace["path"], trace["line"])} | {(s["path"], s["line"]) for s in trace["seen_in"]}
        holding = [
            f for f in result.findings if f.rule.id == trace["rule"] and where <= {(e.path, e.line) for e in f.evidence}
        ]
        assert len(holding) == 1, f"{trace['rule']}: {len(holding)} finding(s) hold all of {sorted(where)}"
    # counts are of requests, not of log rows: each OWASSRF request is in IIS and in HttpProxy\PowerShell
    owassrf = [f for f in result.findings if f.rule.id == "owassrf-owa-powershell"]
    planted_requests = [t for t in key["traces"] if t["rule"] == "owassrf-owa-powershell"]
    assert len(owassrf) == 1 and owassrf[0].count == len(planted_requests) == 4
    assert {e.path.split("/")[-2] for e in owassrf[0].evidence} == {"W3SVC1", "PowerShell"}


def test_the_planted_collection_reads_without_unexpected_errors(planted):
    _, result = planted
    # the generator's truncated last line is a quirk, not a read error; nothing else may fail
    assert result.errors == [], result.errors


def test_benign_lookalikes_never_raise_a_severe_finding(planted):
    key, result = planted
    severe = {(p, ln) for (_, p, ln), sev in located(result).items() if sev in SEVERE}
    flagged = [b for b in key.get("benign", []) if (b["path"], b["line"]) in severe]
    assert key.get("benign"), "the generator listed no look-alikes"
    assert not flagged, flagged


def test_benign_only_collection_is_clean(benign):
    key, result = benign
    assert key["traces"] == []
    assert result.verdict == "NO EVIDENCE FOUND", [(f.rule.id, f.severity, f.count) for f in result.findings]
    assert result.exit_code == 0
    assert all(f.severity in ("info", "low") for f in result.findings)


def test_exposure_windows_match_the_planted_builds(benign):
    key, result = benign
    windows = result.exposure.windows
    planted_builds = [b["build"] for b in key["builds"]]
    assert len(planted_builds) == 2, "the fixture must span the March 2021 update"
    assert [w["build"] for w in windows] == planted_builds
    for i, (w, b) in enumerate(zip(windows, key["builds"], strict=True)):
        assert w["last_seen"][:10] <= b["to"][:10]
        # the first build's owa/auth/<build> folder dates its install, before the logs begin
        assert w["first_seen"][:10] <= b["from"][:10] if i == 0 else w["first_seen"][:10] >= b["from"][:10]
    assert "proxylogon" in windows[0]["vulnerable"] and "proxylogon" not in windows[-1]["vulnerable"]


def test_coverage_reports_every_log_family(benign):
    _, result = benign
    families = {c.family for c in result.coverage}
    assert {
        "log_iis",
        "log_httpproxy",
        "log_ecp_server",
        "log_oab_generator",
        "log_ews",
        "log_rps_http",
        "events",
    } <= families
    assert result.missing == []


def test_quirks_in_the_answer_key_are_all_present(planted):
    key, _ = planted
    kinds = {q["kind"] for q in key.get("quirks", [])}
    assert len(kinds) >= 6, kinds


def test_synth_cli_and_scan_cli_round_trip(tmp_path: Path):
    from typer.testing import CliRunner

    from exhunt.cli import app

    runner = CliRunner()
    out = tmp_path / "lab"
    res = runner.invoke(app, ["synth", str(out), "--seed", "2", "--users", "4", "--days", "9"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["scan", str(out), "--json", "-", "-q"])
    assert res.exit_code == 1 and json.loads(res.stdout)["verdict"] == "COMPROMISED"
    res = runner.invoke(app, ["synth", str(tmp_path / "x"), "--plant", "nonsense"])
    assert res.exit_code == 2 and "unknown --plant" in res.output


def test_web_shells_are_joined_to_their_requests(planted):
    """The planted server: the dormant shell is called dormant, the shell in the IIS root is called used
    (through the IIS log), the HAFNIUM shell in owa\\auth is used in both IIS and HttpProxy, and the 200
    for a script that is not on disk is a probe."""
    key, result = planted
    by_rule: dict[str, set[str]] = {}
    for f in result.findings:
        by_rule.setdefault(f.rule.id, set()).update(e.path for e in f.evidence)
    dormant = {p.rsplit("/", 1)[-1] for p in by_rule["webshell-dormant"]}
    assert "errorPage.aspx" in dormant
    assert not dormant & {"iiserror.aspx", "RedirSuiteServerProxy.aspx", "xx.aspx"}, dormant
    used = {t["path"] for t in key["traces"] if t["rule"] == "webshell-request"}
    assert used <= by_rule["webshell-request"]
    assert any("/HttpProxy/Owa/" in p for p in by_rule["webshell-request-httpproxy"])
    grouped = {tuple(f.group.values()) for f in result.findings if f.rule.id == "webshell-request"}
    assert {
        ("139.162.202.236", "/iiserror.aspx"),
        ("139.162.202.236", "/owa/auth/RedirSuiteServerProxy.aspx"),
    } <= grouped
    probes = [f for f in result.findings if f.rule.id == "webshell-probe-missing"]
    assert [f.group["cs-uri-stem"] for f in probes] == ["/owa/auth/gone.aspx"]
    assert {f.severity for f in result.findings if f.rule.id == "process-webworker-access"} == {"high"}


def test_what_the_attacker_did_next_has_its_phase_in_the_timeline_and_the_incident(planted):
    """Findings past the mail server (domain rights, logons to other hosts, ransomware, miners) are placed
    in their phase, and the incident summary says the intrusion went beyond the server."""
    _, result = planted
    doc = result.to_dict()
    phases = {e["rule"]: e["phase"] for e in doc["timeline"] if e.get("rule")}
    expected = {
        "ad-domain-acl-writedacl-grant": "privilege escalation", "ad-object-acl-takeover": "privilege escalation",
        "logon-rdp-from-exchange": "lateral movement", "logon-network-from-exchange": "lateral movement",
        "service-install-psexec": "lateral movement", "file-ransom-note": "impact",
        "payload-scheduled-downloader": "impact",
    }  # fmt: skip
    assert {r: phases.get(r) for r in expected} == expected
    beyond = doc["incident"]["beyond_the_server"]
    assert {b["phase"] for b in beyond} == {"privilege escalation", "lateral movement", "impact"}
    assert [b["phase"] for b in beyond] == sorted((b["phase"] for b in beyond), key=["impact", "lateral movement",
                                                  "privilege escalation"].index)  # fmt: skip
    assert any("went past the mail server" in t for t in doc["incident"]["what_to_do"])
