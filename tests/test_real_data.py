"""The team's real public samples (../shared/data): they parse cleanly and give the expected findings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exhunt.scan import ScanOptions, scan
from tests.conftest import shared_path


def test_real_iis_log_parses_without_errors():
    log = shared_path("data", "iis", "Tunna_rdp_tunnel_IIS.log")
    lines = log.read_bytes().splitlines()
    data_lines = sum(1 for ln in lines if ln.strip() and not ln.startswith(b"#"))
    result = scan(log)
    assert result.errors == []
    (iis,) = result.coverage
    assert iis.family == "log_iis" and iis.records == data_lines and data_lines > 4000
    assert iis.first.year == iis.last.year == 2019


def real_evtx(tmp_path: Path, name: str) -> Path:
    """A collection holding one real EVTX, as a triage tool would lay it out."""
    dest = tmp_path / "HOST" / "EventLogs" / name
    dest.parent.mkdir(parents=True)
    shutil.copy(shared_path("data", "evtx", name), dest)
    return tmp_path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # w3wp starts cmd.exe (Sysmon 1) and opens it with full access (Sysmon 10, source w3wp)
        ("LM_typical_IIS_webshell_sysmon_1_10_traces.evtx", {"process-webserver-shell", "process-webworker-access"}),
        ("sysmon_10_1_memdump_comsvcs_minidump.evtx", {"process-lsass-dump"}),
        ("DE_1102_security_log_cleared.evtx", {"log-cleared"}),
        ("Runas_4624_4648_Webshell_CreateProcessAsUserA.evtx", {"webserver-explicit-credentials", "log-cleared"}),
    ],
)
def test_real_evtx_yield_the_expected_findings(tmp_path: Path, name: str, expected: set[str]):
    result = scan(real_evtx(tmp_path, name), ScanOptions(all_evidence=True))
    assert result.errors == []
    assert {f.rule.id for f in result.findings} == expected
    for f in result.findings:
        assert all(e.path == f"HOST/EventLogs/{name}" and e.record_id for e in f.evidence)


def test_logon_only_evtx_gives_nothing_high(tmp_path: Path):
    result = scan(real_evtx(tmp_path, "CA_4624_4625_LogonType2_LogonProc_chrome.evtx"))
    assert not [f for f in result.findings if f.severity in ("high", "critical")]
    assert result.verdict == "INCOMPLETE"  # events only: no web logs to judge exploitation by


def test_real_iis_tunnel_log_shows_the_web_shell_tunnel():
    log = shared_path("data", "iis", "Tunna_rdp_tunnel_IIS.log")
    result = scan(log, ScanOptions(all_evidence=True))
    (finding,) = [f for f in result.findings if f.rule.id == "webshell-tcp-tunnel"]
    assert finding.group == {"client_ip": "10.0.2.17", "url_stem": "/erp/conn.aspx"}  # the normalised web fields
    assert "proxy&port=3389&ip=127.0.0.1" in finding.evidence[0].raw
    assert result.verdict == "COMPROMISED"


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("file_event_win_taskmgr_lsass_dump", {"file-event-lsass-dump"}),  # taskmgr.exe -> ...\Temp\lsass.DMP
        ("file_event_win_dump_file_susp_creation", {"file-event-lsass-dump"}),  # cmd.exe -> C:\lsass.dmp
        ("file_event_win_cred_dump_tools_dropped_files", set()),  # procdump downloads: no dump written
    ],
)
def test_lsass_dump_files_in_real_sysmon_events(tmp_path: Path, folder: str, expected: set[str]):
    base = shared_path("data", "sigma", "regression_data", "rules", "windows", "file", "file_event", folder)
    (evtx,) = base.glob("*.evtx")
    dest = tmp_path / "HOST" / "EventLogs" / evtx.name
    dest.parent.mkdir(parents=True)
    shutil.copy(evtx, dest)
    assert {f.rule.id for f in scan(tmp_path).findings if f.severity in ("high", "critical")} == expected
