"""Cmdlet rules (`source: cmdlet`) read the MSExchange Management event log and the Rps_Cmdlet log of
remote PowerShell alike: ProxyShell's cmdlets are often only in the latter. The same cmdlet in both
is one finding with evidence from each; a cmdlet that failed was attempted, and nothing was taken."""

from __future__ import annotations

from pathlib import Path

from exhunt.scan import ScanOptions, scan
from tests.conftest import INSTALL, write
from tests.rules.test_detections import events_file

RPS = f"{INSTALL}/Logging/CmdletInfra/Powershell-Proxy/Cmdlet/Rps_Cmdlet_2021081401-1.LOG"
FIELDS = "DateTime,RequestId,ServerHostName,AuthenticatedUser,ClientApplication,Cmdlet,Parameters,ExecutionResult"
EXPORT = r'-Mailbox ""alice@corp.example"" -FilePath ""\\127.0.0.1\c$\inetpub\wwwroot\aspnet_client\x.aspx""'


def rps_log(rows: list[tuple[str, str, str]]) -> str:
    """An Rps_Cmdlet log of (cmdlet, parameters, ExecutionResult) rows."""
    out = ["#Software: Microsoft Exchange Server", "#Version: 15.01.2176.002", "#Log-type: Rps Cmdlet Logs",
           "#Date: 2021-08-14T01:00:00.000Z", f"#Fields: {FIELDS}"]  # fmt: skip
    for i, (cmdlet, params, result) in enumerate(rows):
        out.append(f'2021-08-14T01:00:0{i}.000Z,id{i},EXCH01,CORP\\admin,PowerShell,{cmdlet},"{params}",{result}')
    return "\n".join(out) + "\n"


def _scan(root: Path) -> dict:
    return scan(root, ScanOptions(all_evidence=True)).to_dict()


def _evidence(doc: dict, rule: str) -> list[list[tuple[str, int]]]:
    return [[(e["path"], e["line"]) for e in f["evidence"]] for f in doc["findings"] if f["rule"] == rule]


def test_cmdlet_rules_run_on_the_rps_cmdlet_log(collection: Path):
    write(collection, RPS, rps_log([
        ("New-ManagementRoleAssignment", '-Role ""Mailbox Import Export"" -User ""admin""', "Success"),
        ("New-MailboxExportRequest", EXPORT, "Success"),
        ("Remove-MailboxExportRequest", '-Identity ""alice\\\\MailboxExport""', "Success"),
        ("Get-Mailbox", "-ResultSize 10", "Success"),
    ]))  # fmt: skip
    doc = _scan(collection)
    assert _evidence(doc, "cmdlet-export-role-assignment") == [[(RPS, 6)]]
    assert _evidence(doc, "cmdlet-mailbox-export") == [[(RPS, 7)]]
    assert _evidence(doc, "cmdlet-remove-export-request") == [[(RPS, 8)]]
    exports = [s for s in doc["mailbox_access"]["sessions"] if s["path"] == "export-cmdlet"]
    assert [s["mailbox"] for s in exports] == ["alice@corp.example"]


def test_a_failed_export_is_found_but_nothing_is_taken(collection: Path):
    write(collection, RPS, rps_log([("New-MailboxExportRequest", EXPORT, "Error")]))
    doc = _scan(collection)
    assert _evidence(doc, "cmdlet-mailbox-export") == [[(RPS, 6)]]  # the attempt is evidence of access
    assert not [s for s in doc["mailbox_access"]["sessions"] if s["path"] == "export-cmdlet"]
    assert not [f for f in doc["findings"] if f["rule"] == "analytics-mailbox-taken"]


def test_one_cmdlet_in_both_logs_is_one_finding_with_evidence_from_each(collection: Path):
    write(collection, RPS, rps_log([("New-MailboxExportRequest", EXPORT, "Success")]))
    params = EXPORT.replace('""', '"')
    rel = events_file(collection, [{
        "channel": "MSExchange Management", "provider_name": "MSExchange CmdletLogs", "event_id": 1,
        "event_data": {"param1": "New-MailboxExportRequest", "param2": params, "param3": "CORP\\admin"},
    }])  # fmt: skip
    found = _evidence(doc := _scan(collection), "cmdlet-mailbox-export")
    assert len(found) == 1 and sorted(found[0]) == sorted([(RPS, 6), (rel, 1)])
    assert [f["count"] for f in doc["findings"] if f["rule"] == "cmdlet-mailbox-export"] == [2]


def test_other_channels_never_pass_for_cmdlets(collection: Path):
    events_file(collection, [{
        "channel": "Application", "provider_name": "Other", "event_id": 1,
        "event_data": {"param1": "New-MailboxExportRequest", "param2": EXPORT},
    }])  # fmt: skip
    assert not _evidence(_scan(collection), "cmdlet-mailbox-export")
