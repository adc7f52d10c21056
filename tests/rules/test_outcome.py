"""Outcome decides: strings that public scanners use do not lower a request the server answered with
success (the public exploit scripts carry the same strings); refused, they stay scanning noise. The
web rules judge the same on every web log: IIS front end and each HttpProxy protocol log."""

from __future__ import annotations

from pathlib import Path

import pytest

from exhunt.scan import scan
from tests.conftest import INSTALL, httpproxy_log, iis_log, write

IIS = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex221001.log"
HTTPPROXY = f"{INSTALL}/Logging/HttpProxy/Autodiscover/HttpProxy_2022100101-1.LOG"
PROXYSHELL = "/autodiscover/autodiscover.json @test.com/mapi/nspi/?&Email=autodiscover/autodiscover.json%3f@test.com"
PROXYNOTSHELL = (
    "/autodiscover/autodiscover.json @evil.com/owa/?&Email=autodiscover/autodiscover.json%3f@evil.com"
    "&Protocol=XYZ&FooProtocol=Powershell"
)
CASES = [(PROXYSHELL, "proxyshell-autodiscover-success"), (PROXYNOTSHELL, "proxynotshell-autodiscover-powershell")]


def _iis_line(request: str, status: str, second: int) -> str:
    stem, query = request.split(" ", 1)
    return (
        f"2022-10-01 01:00:{second:02d} 10.0.0.5 GET {stem} {query.replace(' ', '+')} 443 - 198.51.100.7 "
        f"python-requests/2.28 - {status} 0 0 9"
    )


def _write(collection: Path, log: str, status: str) -> str:
    """Both requests in one web log only: the IIS front end, or HttpProxy\\Autodiscover as the front end saw
    it. Returns the log's path."""
    requests = [request for request, _ in CASES]
    if log == "iis":
        write(collection, IIS, iis_log([_iis_line(r, status, i) for i, r in enumerate(requests)]))
        return IIS
    rows = []
    for i, request in enumerate(requests):
        stem, query = request.split(" ", 1)
        rows.append({"DateTime": f"2022-10-01T01:00:{i:02d}.000Z", "RequestId": f"6f1c2a8e-7d3b-4c55-9a0e-2b8d4f6e1a9{i}",
                     "Protocol": "Autodiscover", "UrlHost": "mail.example.org", "UrlStem": stem, "UrlQuery": "?" + query,
                     "Method": "GET", "HttpStatus": status, "UserAgent": "python-requests/2.28",
                     "ClientIpAddress": "198.51.100.7"})  # fmt: skip
    write(collection, HTTPPROXY, httpproxy_log(rows, version="15.02.0986.005"))
    return HTTPPROXY


@pytest.mark.parametrize("log", ["iis", "httpproxy"])
def test_success_with_scanner_strings_is_exploitation(collection: Path, log: str):
    path = _write(collection, log, "200")
    result = scan(collection)
    assert result.verdict == "COMPROMISED"
    for _, rule in CASES:
        hits = [f for f in result.findings if f.rule.id == rule and f.severity in ("high", "critical")]
        assert hits, f"{rule} not found as high/critical in {log}"
        assert all(e.path == path for f in hits for e in f.evidence)
    assert not any(f.rule.kind == "scanning" for f in result.findings)


@pytest.mark.parametrize("log", ["iis", "httpproxy"])
def test_the_same_strings_refused_stay_scanning_noise(collection: Path, log: str):
    _write(collection, log, "401")
    result = scan(collection)
    assert result.verdict == "NO EVIDENCE FOUND"
    assert {f.rule.kind for f in result.findings} == {"scanning"}
    assert sum(f.count for f in result.findings if f.rule.id == "scanner-probe") == len(CASES)
