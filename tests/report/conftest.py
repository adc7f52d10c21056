"""Result documents for the report tests: the synthetic HAFNIUM server, a hostile collection, a
document with every optional section, and a big one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from exhunt.scan import scan
from exhunt.synth import FAMILIES, generate
from tests.conftest import INSTALL, httpproxy_log, iis_log, write

ESC_UA = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m"
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "</script><script>alert(2)</script>",
    "<!--<script>alert(3)//",
    "\u2028</script>\u2029",
    "quote'and\\backslash']",
]


@pytest.fixture(scope="session")
def hafnium_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hafnium") / "EXCH01-triage"
    generate(root, seed=7, users=20, days=5, plant=frozenset(FAMILIES))
    return root


@pytest.fixture(scope="session")
def hafnium(hafnium_dir: Path) -> dict[str, Any]:
    """The scan result of `exhunt synth DIR --seed 7 --plant all --users 20 --days 5`."""
    return json.loads(json.dumps(scan(hafnium_dir).to_dict(), default=str))


def _w3c(value: str) -> str:
    """A value as IIS writes it in a space-separated field (spaces become +)."""
    return value.replace(" ", "+")


def build_hostile(root: Path) -> Path:
    """A small collection whose user agents, URLs, client addresses, file names and cmdlet
    parameters carry script injections, `</script>` breakers, `javascript:` links and ANSI escapes,
    in records the built-in rules match."""
    lines = []
    for i, payload in enumerate([ESC_UA, HOSTILE[-1], *HOSTILE[:-1]]):
        lines.append(
            f"2021-03-03 01:00:{i:02d} 10.0.0.5 POST /ecp/y.js {_w3c('a=' + payload)} 443 - 203.0.113.7 "
            f"{_w3c(payload)} {_w3c(payload)} 200 0 0 31"
        )
    lines.append(
        f"2021-03-03 01:01:00 10.0.0.5 POST /ecp/x.js - 443 - {_w3c(HOSTILE[1])} python-requests/2.25.1 - 200 0 0 31"
    )
    write(root, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", iis_log(lines))
    anchor = "ServerInfo~a]@exch01:444/ecp/" + HOSTILE[3] + "?#"
    rows = [
        {"DateTime": f"2021-03-03T01:02:0{i}.000Z", "AnchorMailbox": anchor, "UserAgent": p,
         "ClientIpAddress": "203.0.113.7", "UrlStem": "/ecp/" + p, "HttpStatus": "200", "Method": "POST"}
        for i, p in enumerate([*HOSTILE, ESC_UA])
    ]  # fmt: skip
    write(root, f"{INSTALL}/Logging/HttpProxy/Ecp/HttpProxy_2021030301-1.LOG", httpproxy_log(rows))
    events = []
    for i, payload in enumerate(HOSTILE, 1):
        events.append(
            json.dumps(
                {
                    "@timestamp": f"2021-03-03T01:03:0{i}.000Z",
                    "message": f"Cmdlet succeeded. Set-OabVirtualDirectory -ExternalUrl 'http://f/{payload}'",
                    "winlog": {
                        "record_id": i,
                        "computer_name": "EXCH01",
                        "channel": "MSExchange Management",
                        "provider_name": "MSExchange CmdletLogs",
                        "event_id": 1,
                        "event_data": {
                            "param1": "Set-OabVirtualDirectory",
                            "param2": f"-ExternalUrl 'http://f/<script>{payload}</script>' -Identity '{ESC_UA}'",
                        },
                    },
                }
            )
        )
    write(root, "EXCH01/EventLogs/winlogbeat.ndjson", "\n".join(events) + "\n", crlf=False)
    for name in ('"><img src=x onerror=alert(1)>.aspx', "javascript:alert(1).aspx", "evil\u202etxt.aspx"):
        write(root, f"EXCH01/C/inetpub/wwwroot/aspnet_client/{name}", '<%@ Page Language="C#" %>\r\n')
    return root


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hostile(tmp_path_factory.mktemp("hostile") / "collection")


@pytest.fixture(scope="session")
def hostile(hostile_dir: Path) -> dict[str, Any]:
    doc = json.loads(json.dumps(scan(hostile_dir).to_dict(), default=str))
    rules = {f["rule"] for f in doc["findings"]}
    # the payloads must reach the report through real detections, else the test proves nothing
    assert {"proxylogon-ecp-js-post", "proxylogon-ssrf-anchor", "cmdlet-vdir-script", "file-webshell-location"} <= rules
    return doc


def with_optional_sections(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` plus the keys later analyses add: mailbox access, timeline, leads, incident, fleet, rules."""
    doc = copy.deepcopy(doc)
    first = doc["findings"][0]
    ev = first["evidence"][0]
    doc["mailbox_access"] = [
        {"mailbox": "ceo@example.org", "accessor": "EXCH01$", "client_ip": "130.255.189.21",
         "user_agent": HOSTILE[0], "path": "/ews/exchange.asmx", "first": "2021-02-26T04:13:00Z",
         "last": "2021-02-26T05:00:00Z", "operations": ["FindItem", "GetItem"], "items": 312, "bytes": 48_000_000,
         "evidence": [{"path": ev["path"], "line": ev["line"]}]},
        {"mailbox": "cfo@example.org", "accessor": "EXCH01$", "client_ip": "130.255.189.21",
         "user_agent": "python-requests/2.25.1", "path": "/ews/exchange.asmx", "first": "2021-02-26T04:20:00Z",
         "last": "2021-02-26T04:25:00Z", "operations": ["GetItem"], "items": 14, "bytes": 900_000, "evidence": []},
    ]  # fmt: skip
    doc["timeline"] = [
        {"time": "2021-02-26T04:11:58Z", "phase": "initial access", "technique": "T1190", "host": "EXCH01",
         "title": "SSRF " + HOSTILE[1], "finding": 1, "evidence": {"path": ev["path"], "line": ev["line"]}},
        {"time": "2021-02-26T04:12:13Z", "phase": "persistence", "technique": "T1505.003", "host": "EXCH01",
         "title": "web shell written", "finding": 2, "evidence": {"path": ev["path"], "line": None}},
        {"time": "2021-02-27T01:05:00Z", "phase": "credential access", "technique": "T1003.001", "host": "EXCH01",
         "title": "LSASS dumped", "finding": None, "evidence": {}},
    ]  # fmt: skip
    doc["leads"] = [{"kind": "ip", "value": "130.255.189.21", "why": "exploitation source", "next": "firewall logs"}]
    doc["incident"] = {
        "summary": "ProxyLogon on 2021-02-26, web shells, LSASS dumped",
        "first_access": "2021-02-26T04:11:58Z",
    }
    doc["fleet"] = {
        "hosts": [{"host": "EXCH01", "verdict": "COMPROMISED", "score": 97}, {"host": "EXCH02", "verdict": "NO EVIDENCE FOUND", "score": 0}],
        "hourly": {"EXCH01": {"2021-02-26T04": 30, "2021-02-26T05": 4}, "EXCH02": {"2021-02-26T04": 1}},
        "wave": {"start": "2021-02-26T04:00:00Z", "hosts": 1, "note": "one host hit within the first hour"},
        "campaigns": [{"campaign": "proxylogon", "hosts": ["EXCH01"], "first": "2021-02-26T04:11:58Z"}],
    }  # fmt: skip
    doc["rules"] = [
        {"id": f["rule"], "title": f["title"], "severity": f["severity"], "version": "1"} for f in doc["findings"]
    ]
    doc["rules"].append(
        {"id": "rule-with-no-hit", "title": "A rule that ran and found nothing", "severity": "high", "version": "1"}
    )
    doc["rules_version"] = "builtin-2026.12"
    doc["errors"] = [
        {"path": "EXCH01/EventLogs/Security.evtx", "line": None, "reason": "truncated: 3 of 9 chunks " + HOSTILE[0]}
    ]
    doc["coverage"][0]["gaps"] = [{"first": "2021-02-25T00:00:00Z", "last": "2021-02-25T12:00:00Z"}]
    return doc


def big_document(findings: int = 2000, evidence: int = 5) -> dict[str, Any]:
    """A result with `findings` findings of `evidence` IIS samples each (about 1.2 KB of raw text each)."""
    fields = [
        "date",
        "time",
        "s-ip",
        "cs-method",
        "cs-uri-stem",
        "cs-uri-query",
        "s-port",
        "cs-username",
        "c-ip",
        "cs(User-Agent)",
        "sc-status",
    ]
    out = []
    for n in range(findings):
        samples = []
        for e in range(evidence):
            values = ["2021-03-03", f"01:{n % 60:02d}:{e:02d}", "10.0.0.5", "POST", f"/ecp/{n}.js", "q=" + "A" * 600,
                      "443", "-", f"198.51.{n % 250}.{e}", "Mozilla/5.0 " + "B" * 300 + "<script>x</script>", "200"]  # fmt: skip
            samples.append({"path": f"EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex2103{n % 30:02d}.log", "line": 10 + e,
                            "record_id": None, "time": f"2021-03-03T01:{n % 60:02d}:{e:02d}Z",
                            "record": dict(zip(fields, values, strict=True)), "raw": " ".join(values)})  # fmt: skip
        out.append({"rule": f"rule-{n}", "title": f"Finding number {n}", "severity": ["critical", "high", "medium", "low"][n % 4],
                    "confidence": "high", "kind": "exploitation", "campaign": "proxylogon", "cves": ["CVE-2021-26855"],
                    "attack": ["T1190"], "host": "EXCH01", "group": {"c-ip": f"198.51.{n % 250}.1"},
                    "first_seen": "2021-03-03T01:00:00Z", "last_seen": "2021-03-03T02:00:00Z", "count": 40,
                    "note": "", "evidence": samples})  # fmt: skip
    return {"schema": "exhunt.scan", "schema_version": "1.0", "exhunt_version": "0.1.0", "collection": "big",
            "verdict": "COMPROMISED", "reason": "many", "exit_code": 1, "hosts": ["EXCH01"],
            "stats": {"artifacts": 1, "bytes_read": 1, "records": 1, "seconds": 1}, "coverage": [], "missing": [],
            "warnings": [], "findings": out, "errors": [], "case": None, "exposure": {"windows": [], "mitigations": [], "text": []}}  # fmt: skip
