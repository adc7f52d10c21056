"""The intrusion beyond the Exchange server: AD abuse, footholds, movement and payloads.

Real public samples (tests/data/real, see its README) each give their expected finding; the
synthetic `intrusion` family is found at every planted path and line while its look-alikes raise
nothing above low; the coverage state says whether the AD checks could run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from exhunt.ad_coverage import ad_checks_state
from exhunt.case import CaseReader
from exhunt.scan import ScanOptions, scan
from exhunt.synth import generate
from exhunt.synth.intrusion import DC_HOST, RULES

REAL = Path(__file__).parent / "data" / "real"
REAL_EXPECTED = {
    "otrf_covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges.json": ("ad-dcsync-by-account", "critical"),
    "otrf_empire_powerview_ldap_ntsecuritydescriptor.json": ("ad-domain-acl-replication-grant", "critical"),
    "otrf_empire_psexec_dcerpc_tcp_svcctl.json": ("service-install-suspicious", "high"),
    "otrf_covenant_wmi_remote_event_subscription_ActiveScriptEventConsumers.json": ("wmi-event-subscription", "high"),
    "otrf_empire_persistence_registry_modification_run_keys_elevated_user.json": ("registry-run-key", "medium"),
    "otrf_empire_schtasks_creation_standard_user.json": ("scheduled-task-suspicious", "medium"),
}


@pytest.mark.parametrize("name", sorted(REAL_EXPECTED))
def test_real_sample_gives_its_finding(name: str, tmp_path: Path) -> None:
    rule, severity = REAL_EXPECTED[name]
    shutil.copy(REAL / name, tmp_path / name)
    result = scan(tmp_path, ScanOptions())
    assert result.errors == []
    hits = [f for f in result.findings if f.rule.id == rule]
    assert hits, [(f.rule.id, f.severity) for f in result.findings]
    assert hits[0].severity == severity
    assert all(e.path == name and e.line for f in hits for e in f.evidence)


def test_real_samples_are_small_and_listed() -> None:
    readme = (REAL / "README.md").read_text(encoding="utf-8")
    for p in REAL.glob("*.json"):
        assert p.stat().st_size < 200_000, p
        assert p.name in readme and p.name in REAL_EXPECTED, p


def test_the_dcsync_sample_names_the_account_and_knows_the_dc(tmp_path: Path) -> None:
    name = "otrf_covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges.json"
    shutil.copy(REAL / name, tmp_path / name)
    result = scan(tmp_path, ScanOptions(case=tmp_path.parent / f"{tmp_path.name}.duckdb"))
    (hit,) = [f for f in result.findings if f.rule.id == "ad-dcsync-by-account"]
    assert hit.group.get("data.SubjectUserName") == "pgustavo"
    con = CaseReader.open_saved(result.case)
    try:
        state = ad_checks_state(con)
    finally:
        con.close()
    assert state["state"] == "ran" and state["domain_controllers"] == ["MORDORDC"] and state["directory_auditing"]


# ---- the old/new DACL comparison of 5136 -------------------------------------------------------

SID = "S-1-5-21-1-2-3"
DACL = f"(OA;;CR;1131f6ad-9c07-11d1-f79f-00c04fc2dcd2;;DD)(A;;CCLCSWRPWPLOCRRCWDWO;;;DA)(OA;CIIO;WD;;bf967aba-0de6-11d0-a285-00aa003049e2;{SID}-1118)"


def _ds_change(line: int, op: str, sddl: str, corr: str) -> dict:
    return {
        "EventID": 5136, "Channel": "Security", "SourceName": "Microsoft-Windows-Security-Auditing",
        "Hostname": "DC9.lab.example", "EventTime": f"2021-03-06 03:0{line}:00", "SubjectUserName": "someone",
        "ObjectDN": "DC=lab,DC=example", "ObjectClass": "domainDNS", "AttributeLDAPDisplayName": "nTSecurityDescriptor",
        "OperationType": op, "OpCorrelationID": corr, "AttributeValue": f"O:BAG:BAD:AI{sddl}S:(AU;SA;CR;;;DU)",
    }  # fmt: skip


def _scan_events(tmp_path: Path, events: list[dict]):
    (tmp_path / "dc.json").write_text("\n".join(json.dumps(e) for e in events) + "\n", encoding="utf-8")
    return {f.rule.id for f in scan(tmp_path, ScanOptions()).findings}


def test_a_new_replication_grant_is_found_and_a_rewritten_default_dacl_is_not(tmp_path: Path) -> None:
    grant = f"(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;{SID}-4444)"
    events = [
        _ds_change(1, "%%14675", DACL, "{a}"),
        _ds_change(2, "%%14674", DACL + f"(OA;CIIO;WD;;4828cc14-1437-45bc-9b07-ad6f015e5f28;{SID}-1118)", "{a}"),
    ]
    assert not {"ad-domain-acl-replication-grant", "ad-domain-acl-writedacl-grant"} & _scan_events(tmp_path, events)
    events += [_ds_change(3, "%%14675", DACL, "{b}"), _ds_change(4, "%%14674", grant + DACL, "{b}")]
    (tmp_path / "dc.json").unlink()
    rules = _scan_events(tmp_path, events)
    assert "ad-domain-acl-replication-grant" in rules and "ad-domain-acl-writedacl-grant" not in rules


def test_without_the_old_half_only_non_default_trustees_count(tmp_path: Path) -> None:
    events = [_ds_change(1, "%%14674", DACL, "{c}")]  # defaults only (DD, DA, an inherit-only Exchange ACE)
    assert "ad-domain-acl-replication-grant" not in _scan_events(tmp_path, events)
    (tmp_path / "dc.json").unlink()
    events = [_ds_change(1, "%%14674", DACL + f"(A;CI;GA;;;{SID}-4444)", "{d}")]
    rules = _scan_events(tmp_path, events)
    assert {"ad-domain-acl-replication-grant", "ad-domain-acl-writedacl-grant"} <= rules


# ---- coverage state ----------------------------------------------------------------------------


def _events_con(rows: list[tuple[str, int, str]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE events (computer VARCHAR, event_id INTEGER, provider VARCHAR, data JSON)")
    con.executemany("INSERT INTO events VALUES (?, ?, ?, '{}')", rows)
    return con


def test_ad_checks_state_without_events_or_without_a_dc() -> None:
    assert ad_checks_state(duckdb.connect())["state"] == "not-run"
    sec = "Microsoft-Windows-Security-Auditing"
    state = ad_checks_state(_events_con([("EXCH01.corp.example", 4624, sec), ("EXCH01.corp.example", 4688, sec)]))
    assert state["state"] == "not-run" and state["domain_controllers"] == []
    assert "could not be checked" in state["reason"]
    # a 4769 from another provider name is not taken for a DC's Security log
    assert ad_checks_state(_events_con([("X.corp.example", 4769, "Forged-Provider")]))["state"] == "not-run"


def test_ad_checks_state_with_a_dc_with_and_without_directory_auditing() -> None:
    sec = "Microsoft-Windows-Security-Auditing"
    state = ad_checks_state(_events_con([("dc01.corp.example", 4769, sec), ("EXCH01.corp.example", 4624, sec)]))
    assert state["state"] == "ran" and state["domain_controllers"] == ["DC01"]
    assert not state["directory_auditing"] and "4662/5136" in state["reason"]
    state = ad_checks_state(_events_con([("dc01.corp.example", 4769, sec), ("DC02", 5136, sec)]))
    assert state["domain_controllers"] == ["DC01", "DC02"] and state["directory_auditing"]
    assert state["events"] == {"4769": 1, "5136": 1}


# ---- the synthetic intrusion -----------------------------------------------------------------


@pytest.fixture(scope="module")
def intrusion(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("intrusion")
    root = base / "EXCH01-triage"
    key = generate(root, seed=11, users=6, days=5, plant=frozenset({"intrusion"}))
    result = scan(root, ScanOptions(all_evidence=True, case=base / "case.duckdb"))
    return root, key, result


def test_every_planted_intrusion_trace_is_found(intrusion) -> None:
    _, key, result = intrusion
    found = {(f.rule.id, e.path, e.line) for f in result.findings for e in f.evidence}
    traces = [t for t in key["traces"] if t["family"] == "intrusion"]
    assert {t["rule"] for t in traces} == RULES
    missed = [t for t in traces if (t["rule"], t["path"], t["line"]) not in found]
    assert not missed, missed
    assert result.verdict == "COMPROMISED"
    assert DC_HOST in result.hosts


def test_intrusion_lookalikes_raise_nothing_above_low(intrusion) -> None:
    _, key, result = intrusion
    kinds = {"exchange-setup-domain-acl-removed", "exchange-setup-domain-acl-added", "dc-own-replication",
             "planned-group-change", "admin-rdp-from-jump-host", "backup-agent-service",
             "exchange-setup-computer-spn"}  # fmt: skip
    lookalikes = [b for b in key["benign"] if b["kind"] in kinds]
    assert {b["kind"] for b in lookalikes} == kinds
    flagged = [
        (f.rule.id, f.severity, e.path, e.line)
        for f in result.findings
        for e in f.evidence
        if f.severity not in ("info", "low") and any((b["path"], b["line"]) == (e.path, e.line) for b in lookalikes)
    ]
    assert not flagged, flagged


def test_ad_checks_ran_with_the_dc_and_not_without_it(intrusion, tmp_path: Path) -> None:
    _, _, result = intrusion
    con = CaseReader.open_saved(result.case)
    try:
        assert ad_checks_state(con)["domain_controllers"] == [DC_HOST]
    finally:
        con.close()
    root = tmp_path / "EXCH01-triage"
    generate(root, seed=11, users=3, days=2, benign_only=True)
    shutil.rmtree(root / DC_HOST)
    no_dc = scan(root, ScanOptions(case=tmp_path / "no-dc.duckdb"))
    con = CaseReader.open_saved(no_dc.case)
    try:
        state = ad_checks_state(con)
    finally:
        con.close()
    assert state["state"] == "not-run" and "could not be checked" in state["reason"]


def test_winlogbeat_user_data_only_events_keep_their_fields(tmp_path: Path) -> None:
    """Remote Desktop 1149 carries its fields in UserData only; they were dropped before."""
    line = {
        "@timestamp": "2021-03-06T03:27:00.000Z",
        "winlog": {
            "channel": "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational",
            "provider_name": "Microsoft-Windows-TerminalServices-RemoteConnectionManager", "event_id": 1149,
            "computer_name": "DC01.corp.example", "record_id": 7,
            "user_data": {"xml_name": "EventXML", "Param1": "Administrator", "Param2": "CORP", "Param3": "10.10.1.20"},
        },
    }  # fmt: skip
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rdp.ndjson").write_text(json.dumps(line) + "\n", encoding="utf-8")
    result = scan(tmp_path / "in", ScanOptions(case=tmp_path / "c.duckdb"))
    con = CaseReader.open_saved(result.case)
    try:
        ((data,),) = con.fetch("SELECT data FROM events WHERE event_id = 1149")
    finally:
        con.close()
    assert json.loads(data)["Param3"] == "10.10.1.20"


def _replication(host: str, account: str) -> dict:
    return {
        "EventID": 4662, "Channel": "Security", "SourceName": "Microsoft-Windows-Security-Auditing",
        "Hostname": host, "EventTime": "2021-03-06 03:00:00", "SubjectUserName": account, "AccessMask": "0x100",
        "Properties": "%%7688 {1131f6ad-9c07-11d1-f79f-00c04fc2dcd2} {19195a5b-6da0-11d0-afd3-00c04fd930c9}",
    }  # fmt: skip


def test_replication_by_a_dc_outside_the_collection_named_by_exchange_is_not_flagged(tmp_path: Path) -> None:
    events = [_replication("DC01.corp.example", "DC01$"), _replication("DC01.corp.example", "DC02$")]
    kerberos = {"EventID": 4769, "Channel": "Security", "SourceName": "Microsoft-Windows-Security-Auditing",
                "Hostname": "DC01.corp.example", "EventTime": "2021-03-06 02:59:00", "ServiceName": "krbtgt"}  # fmt: skip
    rules = _scan_events(tmp_path, [kerberos, *events])
    assert "ad-dcsync-unknown-computer" in rules and "ad-dcsync-by-account" not in rules  # DC02 is unknown
    (tmp_path / "dc.json").unlink()
    topology = {"EventID": 1, "Channel": "MSExchange Management", "SourceName": "MSExchange CmdletLogs",
                "Hostname": "EXCH01.corp.example", "EventTime": "2021-03-06 01:00:00", "param1": "Get-Mailbox",
                "param11": "Configuration Domain Controller: 'dc01.corp.example', Preferred Domain Controllers: "
                "'{ dc02.corp.example }'"}  # fmt: skip
    rules = _scan_events(tmp_path, [kerberos, topology, *events])
    assert "ad-dcsync-unknown-computer" not in rules
    (tmp_path / "dc.json").unlink()
    rules = _scan_events(tmp_path, [kerberos, topology, _replication("DC01.corp.example", "pgustavo")])
    assert "ad-dcsync-by-account" in rules  # a user is never excused
