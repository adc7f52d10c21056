"""Each built-in detection, positive and negative, through the whole scan on tiny collections."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from exhunt.scan import ScanOptions, scan
from tests.conftest import INSTALL, httpproxy_log, iis_log, write

HP = f"{INSTALL}/Logging/HttpProxy/Ecp/HttpProxy_2021030301-1.LOG"
W3 = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
W3BE = "EXCH01/C/inetpub/logs/LogFiles/W3SVC2/u_ex210303.log"


def hits(root: Path, rule: str) -> list[tuple[str, int | None]]:
    result = scan(root, ScanOptions(all_evidence=True))
    return [(e.path, e.line) for f in result.findings if f.rule.id == rule for e in f.evidence]


def hp_row(anchor: str = "", status: str = "200", cookie: str = "", ip: str = "130.255.189.21") -> dict[str, str]:
    return {"DateTime": "2021-03-03T01:00:00.000Z", "AnchorMailbox": anchor, "HttpStatus": status,
            "BackEndCookie": cookie, "ClientIpAddress": ip, "UrlStem": "/ecp/y.js"}  # fmt: skip


def test_ssrf_anchor_with_test_proxylogon_exclusions(collection: Path):
    rows = [
        hp_row("ServerInfo~a]@exch01.corp.example:444/mapi/emsmdb/?#"),  # line 7: hit
        hp_row("ServerInfo~a]@exch01.corp.example:444/autodiscover/autodiscover.xml?#"),  # excluded
        hp_row("ServerInfo~localhost/ews/exchange.asmx"),  # excluded: localhost
        hp_row("ServerInfo~localhost~1942062522/owa"),  # no slash after ~localhost... still excluded form
        hp_row("SMTP:user@corp.example"),
        hp_row("ServerInfo~exch01.corp.example/EWS/Exchange.asmx?a=~1942062522"),  # line 12: hit
    ]
    write(collection, HP, httpproxy_log(rows))
    assert hits(collection, "proxylogon-ssrf-anchor") == [(HP, 7), (HP, 12)]


def test_ssrf_cookie(collection: Path):
    rows = [hp_row(cookie="Server~exch01.corp.example/ews/exchange.asmx?a=~1942062522~2021-03-03T01:00:00"),
            hp_row(cookie="Server~exch01.corp.example~1942062522~2021-03-03T01:00:00")]  # fmt: skip
    write(collection, HP, httpproxy_log(rows))
    assert hits(collection, "proxylogon-ssrf-cookie") == [(HP, 7)]


def test_vdir_reset_needs_status_200(collection: Path):
    anchor = "ServerInfo~a]@exch01:444/ecp/DDI/DDIService.svc/SetObject?schema=ResetOABVirtualDirectory#"
    write(collection, HP, httpproxy_log([hp_row(anchor, "500"), hp_row(anchor, "200")]))
    assert hits(collection, "proxylogon-vdir-reset") == [(HP, 8)]


def test_vdir_script_in_ecp_server_log(collection: Path):
    path = f"{INSTALL}/Logging/ECP/Server/ECPServer20210303-1.LOG"
    script = 'http://f/<script language=""JScript"" runat=""server"">function Page_Load(){}</script>'
    text = "\n".join([
        "#Software: Microsoft Exchange Server", "#Version: 15.01.2106.002", "#Log-type: ECP Server Log",
        "#Date: 2021-03-03T00:00:00.000Z", "#Fields: TimeStamp,ServerName,EventId,EventData",
        "2021-03-03T01:00:00.000Z,EXCH01,ECP.Request,\"S:CMD=Set-OabVirtualDirectory.ExternalUrl='https://mail.example.org/OAB'\"",
        f"2021-03-03T01:00:01.000Z,EXCH01,ECP.Request,\"S:CMD=Set-OabVirtualDirectory.ExternalUrl='{script}'.Identity='x'\"",
    ]) + "\n"  # fmt: skip
    write(collection, path, text)
    assert hits(collection, "proxylogon-vdir-script-ecp") == [(path, 7)]


def test_oab_download_outside_the_oab_folder(collection: Path):
    path = f"{INSTALL}/Logging/OABGeneratorLog/OABGeneratorLog_20210303-1.LOG"
    text = "\n".join([
        "#Software: Microsoft Exchange Server", "#Version: 15.01.2106.002", "#Log-type: OAB Generator Log",
        "#Date: 2021-03-03T00:00:00.000Z", "#Fields: date-time,level,message",
        "2021-03-03T01:00:00.000Z,Warning,\"Download failed and temporary file 'C:\\Program Files\\Microsoft\\Exchange Server\\V15\\ClientAccess\\OAB\\Temp\\a.tmp' needs to be removed\"",
        "2021-03-03T01:00:01.000Z,Warning,\"Download failed and temporary file 'C:\\inetpub\\wwwroot\\aspnet_client\\xx.aspx' needs to be removed\"",
    ]) + "\n"  # fmt: skip
    write(collection, path, text)
    assert hits(collection, "proxylogon-oab-file-write") == [(path, 7)]


def events_file(collection: Path, events: list[dict]) -> str:
    rel = "EXCH01/EventLogs/winlogbeat.ndjson"
    lines = []
    for i, e in enumerate(events, 1):
        lines.append(json.dumps({"@timestamp": "2021-03-03T01:00:00.000Z", "message": e.pop("message", ""),
                                 "winlog": {"record_id": i, "computer_name": "EXCH01", **e}}))  # fmt: skip
    write(collection, rel, "\n".join(lines) + "\n", crlf=False)
    return rel


def test_um_deserialization_needs_error_level_and_the_exception(collection: Path):
    um = {"channel": "Application", "provider_name": "MSExchange Unified Messaging", "event_id": 1040}
    rel = events_file(collection, [
        {**um, "level": "error", "message": "UM worker failed: System.InvalidCastException at ..."},
        {**um, "level": "information", "message": "System.InvalidCastException (informational)"},
        {**um, "level": "error", "message": "Call failed: timeout"},
    ])  # fmt: skip
    assert hits(collection, "proxylogon-um-deserialization") == [(rel, 1)]


def test_cmdlet_vdir_script(collection: Path):
    base = {"channel": "MSExchange Management", "provider_name": "MSExchange CmdletLogs", "event_id": 1}
    rel = events_file(collection, [
        {**base, "event_data": {"param1": "Set-OabVirtualDirectory", "param2": "-ExternalUrl 'https://mail.example.org/OAB'"}},
        {**base, "event_data": {"param1": "Set-OabVirtualDirectory",
                                "param2": "-ExternalUrl 'http://f/<script language=\"JScript\" runat=\"server\">x</script>'"}},
    ])  # fmt: skip
    assert hits(collection, "cmdlet-vdir-script") == [(rel, 2)]


def test_web_request_rules(collection: Path):
    write(collection, W3, iis_log([
        "2021-03-03 01:00:00 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 python-requests/2.25.1 - 200 0 0 31",
        "2021-03-03 01:00:01 10.0.0.5 GET /owa/auth/x.js - 443 - 198.51.100.9 Mozilla/5.0+zgrab/0.x - 404 0 0 3",
        "2021-03-03 01:00:02 10.0.0.5 POST /owa/auth/RedirSuiteServerProxy.aspx - 443 - 139.162.202.236 Mozilla/5.0 - 200 0 0 9",
        "2021-03-03 01:00:03 10.0.0.5 POST /owa/auth/logon.aspx - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9",
        "2021-03-03 01:00:04 10.0.0.5 POST /aspnet_client/system_web/xx.aspx - 443 - 139.162.202.236 Mozilla/5.0 - 200 0 0 9",
        "2021-03-03 01:00:05 10.0.0.5 GET /aspnet_client/system_web/nope.aspx - 443 - 198.51.100.9 Mozilla/5.0 - 404 0 0 9",
    ]))  # fmt: skip
    write(collection, W3BE, iis_log([
        "2021-03-03 01:00:00 10.0.0.5 POST /ecp/DDI/DDIService.svc/SetObject schema=ResetOABVirtualDirectory 444 CORP\\EXCH01$ 10.0.0.5 python-requests/2.25.1 - 200 0 0 31",
        "2021-03-03 01:00:01 10.0.0.5 POST /EWS/Exchange.asmx - 444 CORP\\user0001 10.0.0.5 Microsoft+Office/16.0 - 200 0 0 31",
        "2021-03-03 01:00:02 10.0.0.5 POST /ecp/DDI/DDIService.svc/GetList - 443 CORP\\EXCH01$ 10.0.0.5 x - 200 0 0 31",
    ]))  # fmt: skip
    assert hits(collection, "proxylogon-ecp-js-post") == [(W3, 5)]
    assert sorted(hits(collection, "webshell-access")) == [(W3, 7), (W3, 9)]
    assert hits(collection, "ssrf-machine-account-backend") == [(W3BE, 5)]


def test_webshell_files_and_context_escalation(collection: Path):
    auth = f"{INSTALL}/FrontEnd/HttpProxy/owa/auth"
    write(collection, f"{auth}/logon.aspx", "<%@ Page %>")
    write(collection, f"{auth}/RedirSuiteServerProxy.aspx", "<script runat=server>")
    write(collection, f"{INSTALL}/FrontEnd/HttpProxy/ecp/auth/TimeoutLogoff.aspx", "<%@ Page %>")
    write(collection, "EXCH01/C/inetpub/wwwroot/aspnet_client/system_web/xx.aspx", "<%eval%>")
    write(collection, "EXCH01/C/root/lsass.dmp", b"MDMP")
    write(collection, "EXCH01/C/ProgramData/VMware/VMware Tools/vss_manifests.zip", b"PK\x05\x06" + b"\0" * 18)
    result = scan(collection, ScanOptions(all_evidence=True))
    by_rule = {}
    for f in result.findings:
        by_rule.setdefault(f.rule.id, []).append(f)
    assert sorted(e.path for f in by_rule["file-webshell-location"] for e in f.evidence) == [
        f"{auth}/RedirSuiteServerProxy.aspx", "EXCH01/C/inetpub/wwwroot/aspnet_client/system_web/xx.aspx",
    ]  # fmt: skip
    assert by_rule["context-lsass-dump-file"][0].severity == "high"  # web shells on the same host
    assert by_rule["context-staging-archive"][0].severity == "medium"


def test_context_files_stay_low_without_exploitation(collection: Path):
    write(collection, "EXCH01/C/root/lsass.dmp", b"MDMP")
    write(collection, "EXCH01/C/ProgramData/VMware/VMware Tools/vss_manifests.zip", b"PK\x05\x06" + b"\0" * 18)
    write(collection, W3, iis_log(["2021-03-03 01:00:03 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9"]))
    result = scan(collection)
    assert {f.rule.id: f.severity for f in result.findings} == {
        "context-lsass-dump-file": "low",
        "context-staging-archive": "low",
    }
    assert result.verdict == "NO EVIDENCE FOUND" and result.exit_code == 0


def test_zip_collection_gives_the_same_evidence_paths(collection: Path, tmp_path: Path):
    write(collection, HP, httpproxy_log([hp_row("ServerInfo~a]@x:444/mapi/emsmdb/?#")]))
    z = tmp_path / "triage.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in collection.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(collection).as_posix())
    result = scan(z, ScanOptions(all_evidence=True))
    ev = result.findings[0].evidence[0]
    assert (ev.path, ev.line) == (HP, 7)
    assert ev.raw.startswith("2021-03-03T01:00:00.000Z,") and "ServerInfo~" in ev.raw
    assert ev.record["AnchorMailbox"] == "ServerInfo~a]@x:444/mapi/emsmdb/?#"


@pytest.mark.parametrize("n", [1, 30])
def test_hits_from_one_client_are_grouped(collection: Path, n: int):
    write(collection, HP, httpproxy_log([hp_row("ServerInfo~a]@x:444/mapi/emsmdb/?#") for _ in range(n)]))
    result = scan(collection, ScanOptions(samples=5))
    (finding,) = [f for f in result.findings if f.rule.id == "proxylogon-ssrf-anchor"]
    assert finding.count == n and len(finding.evidence) == min(n, 5)
    assert finding.group == {"ClientIpAddress": "130.255.189.21"}


def test_content_rules_find_shells_by_their_bytes(collection: Path):
    write(collection, "AAA-first/readme.txt", "sorted first: a row without content-scan columns")
    root = "EXCH01/C/inetpub/wwwroot/aspnet_client/system_web"
    write(collection, f"{root}/chopper.aspx", '<%@ Page Language="Jscript"%><%eval(Request.Item["z"],"unsafe");%>')
    write(collection, f"{root}/export.aspx", b"!BDN" + b"\x00" * 500)
    oab = ('ExternalUrl : http://f/<script language="JScript" runat="server">function Page_Load(){}</script>\r\n'
           "InternalAuthenticationMethods : {WindowsIntegrated}\r\nExtendedProtectionTokenChecking : None\r\n")  # fmt: skip
    write(collection, f"{INSTALL}/FrontEnd/HttpProxy/owa/auth/OutlookZH.aspx", oab)
    write(collection, f"{INSTALL}/FrontEnd/HttpProxy/owa/auth/logon.aspx", "<%@ Page Language=C# %><html>logon</html>")
    write(collection, "EXCH01/C/ProgramData/backup/export.pst", b"!BDN" + b"\x00" * 500)  # a PST, not a page
    result = scan(collection, ScanOptions(all_evidence=True))
    found = {(f.rule.id, e.path.rsplit("/", 1)[-1]) for f in result.findings for e in f.evidence}
    assert ("file-webshell-content", "chopper.aspx") in found
    assert ("file-webshell-content", "OutlookZH.aspx") in found
    assert ("file-webshell-pst-or-certreq", "export.aspx") in found
    assert not {x for x in found if x[1] in ("logon.aspx", "export.pst") and x[0].startswith("file-webshell-")}


def test_published_web_shell_hash_is_found_by_the_builtin_pack(collection: Path):
    from exhunt.iocs import builtin_iocs

    hashes = {i.value for i in builtin_iocs().indicators if i.type == "sha256"}
    assert "c838e77afe750d713e67ffeb4ec1b82ee9066cbe21f11181fd34429f70831ec1" in hashes  # GTSC pxh4HG1v.ashx
    assert len(hashes) >= 30


def test_user_yara_rules_and_bad_yara_file(collection: Path, tmp_path: Path):
    from exhunt.errors import RuleError

    write(collection, "EXCH01/C/inetpub/wwwroot/aspnet_client/a.aspx", "<% marker-XYZZY-123 %>")
    good = tmp_path / "mine.yar"
    good.write_text('rule mine { strings: $a = "marker-XYZZY-123" condition: $a }')
    result = scan(collection, ScanOptions(yara=[good]))
    hit = next(f for f in result.findings if f.rule.id == "file-yara-user")
    assert hit.evidence[0].record["yara"] == ["user:mine"]
    bad = tmp_path / "bad.yar"
    bad.write_text("rule { broken")
    with pytest.raises(RuleError, match=r"bad\.yar: invalid YARA"):
        scan(collection, ScanOptions(yara=[bad]))


def test_script_written_long_after_its_folder(collection: Path):
    import os

    auth = f"{INSTALL}/FrontEnd/HttpProxy/owa/auth"
    install, later = 1_600_000_000, 1_614_700_000  # 2020-09-13, 2021-03-02
    for name in ("logon.aspx", "logoff.aspx", "errorFE.aspx", "frowny.aspx", "RedirSuiteServiceProxy.aspx"):
        p = write(collection, f"{auth}/{name}", "<%@ Page %>")
        os.utime(p, (install, later if name == "RedirSuiteServiceProxy.aspx" else install))
    result = scan(collection, ScanOptions(all_evidence=True))
    (f,) = [f for f in result.findings if f.rule.id == "file-script-time-outlier"]
    assert [e.path for e in f.evidence] == [f"{auth}/RedirSuiteServiceProxy.aspx"]


def test_python_logic_must_name_an_exhunt_function(tmp_path: Path):
    from exhunt.errors import RuleError
    from exhunt.rules.model import load_rule_file

    p = tmp_path / "r.yaml"
    p.write_text("id: x\ntitle: x\ndescription: x\nseverity: low\nkind: context\nsource: files\npython: os:system\n")
    with pytest.raises(RuleError, match=r"not a function of exhunt\.rules\.logic"):
        load_rule_file(p)


def test_cmdlet_log_deletion(collection: Path):
    rel = events_file(collection, [
        {"channel": "Microsoft-Windows-Sysmon/Operational", "event_id": 23, "event_data": {
            "TargetFilename": "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Logging\\CmdletInfra\\LocalPowerShell\\Cmdlet\\x_Cmdlet_1.LOG"}},
        {"channel": "Microsoft-Windows-Sysmon/Operational", "event_id": 23, "event_data": {"TargetFilename": "C:\\Temp\\x.log"}},
    ])  # fmt: skip
    assert hits(collection, "log-exchange-cmdlet-deleted") == [(rel, 1)]


def test_one_request_in_iis_and_httpproxy_is_one_finding_counted_once(collection: Path):
    req = "3b0d1f5e-2a6c-4e8f-9b71-0c5d2e4a6f18"
    write(collection, W3, iis_log([
        f"2021-03-03 01:00:00 10.0.0.5 POST /ecp/y.js &CorrelationID=<empty>;&cafeReqId={req}; 443 - 130.255.189.21 python-requests/2.25.1 - 200 0 0 31",
        "2021-03-03 01:00:09 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 python-requests/2.25.1 - 200 0 0 31",
    ]))  # fmt: skip
    row = {"DateTime": "2021-03-03T01:00:00.120Z", "RequestId": req, "UrlStem": "/ecp/y.js", "Method": "POST",
           "HttpStatus": "200", "ClientIpAddress": "130.255.189.21", "UserAgent": "python-requests/2.25.1"}  # fmt: skip
    write(collection, HP, httpproxy_log([row]))
    result = scan(collection, ScanOptions(all_evidence=True))
    found = [f for f in result.findings if f.rule.id == "proxylogon-ecp-js-post"]
    assert len(found) == 1 and found[0].group == {"client_ip": "130.255.189.21"}
    assert found[0].count == 2  # two requests, the first seen in both logs
    assert sorted((e.path, e.line) for e in found[0].evidence) == [(HP, 7), (W3, 5), (W3, 6)]
