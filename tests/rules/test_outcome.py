"""Outcome decides: strings that public scanners use do not lower a request the server answered with
success (the public exploit scripts carry the same strings); refused, they stay scanning noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from exhunt.scan import scan
from tests.conftest import iis_log, write

IIS = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex221001.log"
PROXYSHELL = "/autodiscover/autodiscover.json @test.com/mapi/nspi/?&Email=autodiscover/autodiscover.json%3f@test.com"
PROXYNOTSHELL = (
    "/autodiscover/autodiscover.json @evil.com/owa/?&Email=autodiscover/autodiscover.json%3f@evil.com"
    "&Protocol=XYZ&FooProtocol=Powershell"
)


def _line(request: str, status: str) -> str:
    stem, query = request.split(" ", 1)
    return f"2022-10-01 01:00:00 10.0.0.5 GET {stem} {query.replace(' ', '+')} 443 - 198.51.100.7 python-requests/2.28 - {status} 0 0 9"


@pytest.mark.parametrize(
    ("request_", "rule"),
    [(PROXYSHELL, "proxyshell-autodiscover-success"), (PROXYNOTSHELL, "proxynotshell-autodiscover-powershell")],
)
def test_success_with_scanner_strings_is_exploitation(collection: Path, request_: str, rule: str):
    write(collection, IIS, iis_log([_line(request_, "200")]))
    result = scan(collection)
    assert result.verdict == "COMPROMISED"
    assert any(f.rule.id == rule and f.severity in ("high", "critical") for f in result.findings)


@pytest.mark.parametrize("request_", [PROXYSHELL, PROXYNOTSHELL])
def test_the_same_strings_refused_stay_scanning_noise(collection: Path, request_: str):
    write(collection, IIS, iis_log([_line(request_, "401")]))
    result = scan(collection)
    assert result.verdict == "NO EVIDENCE FOUND"
    assert {f.rule.kind for f in result.findings} == {"scanning"}
