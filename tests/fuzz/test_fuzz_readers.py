"""The readers (exhunt.sources.*, through exhunt.scan.scan) on damaged collections: one file of a
small collection truncated, overwritten or given a NUL run at a random point. The scan always
returns a verdict, and the attack line written before the damage is still found. Runs under
`make fuzz` (FUZZ=1); the normal suite runs a few fixed examples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exhunt.scan import scan
from tests.conftest import INSTALL, httpproxy_log, iis_log, write
from tests.fuzz.conftest import FUZZ, keep_failure

IIS = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
HP = f"{INSTALL}/Logging/HttpProxy/Ecp/HttpProxy_2021030301-1.LOG"
EVENTS = "EXCH01/EventLogs/security.jsonl"
ATTACK = "2021-03-03 04:11:58 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 Mozilla/5.0 - 200 0 0 9"
BENIGN = [
    f"2021-03-03 05:{m:02d}:00 10.0.0.5 GET /owa/ - 443 user{m} 10.1.1.{m} Mozilla/5.0 - 200 0 0 9" for m in range(60)
]
FILES = {
    IIS: iis_log([ATTACK, *BENIGN]),
    HP: httpproxy_log(
        [
            {
                "DateTime": f"2021-03-03T01:{m:02d}:00.000Z",
                "ClientIpAddress": "10.0.0.9",
                "HttpStatus": "200",
                "UrlStem": "/owa/",
                "AnchorMailbox": f"SMTP:u{m}@x.org",
            }
            for m in range(40)
        ]
    ),
    EVENTS: "".join(
        json.dumps(
            {
                "winlog": {
                    "event_id": 4624,
                    "channel": "Security",
                    "record_id": n,
                    "event_data": {"TargetUserName": f"u{n}"},
                },
                "@timestamp": f"2021-03-03T02:{n:02d}:00Z",
                "host": {"name": "EXCH01"},
            }
        )
        + "\n"
        for n in range(40)
    ),
}


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, int, str, bytes]:
    path = draw(st.sampled_from(sorted(FILES)))
    size = len(FILES[path].replace("\n", "\r\n").encode())
    at = draw(st.integers(0, size))
    kind = draw(st.sampled_from(["truncate", "junk", "nul-run", "junk-file"]))
    junk = draw(st.binary(min_size=1, max_size=200)) if kind in ("junk", "junk-file") else b""
    return path, at, kind, junk


def _build(root: Path, path: str, at: int, kind: str, junk: bytes) -> bytes:
    for rel, text in FILES.items():
        write(root, rel, text)
    target = root / path
    data = target.read_bytes()
    if kind == "truncate":
        data = data[:at]
    elif kind == "junk":
        data = data[:at] + junk + data[at + len(junk) :]
    elif kind == "nul-run":
        data = data[:at] + b"\x00" * 4096 + data[at + 4096 :]
    else:
        write(root, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210304.log", junk)
    target.write_bytes(data)
    return data


@pytest.mark.skipif(not FUZZ, reason="reader fuzzing runs under 'make fuzz' (FUZZ=1); fixed cases below")
@given(case=damage())
def test_damaged_collections_always_give_a_verdict(tmp_path_factory: pytest.TempPathFactory, case):
    _check(tmp_path_factory.mktemp("c"), *case)


@pytest.mark.parametrize(
    "case",
    [
        (IIS, 400, "truncate", b""),
        (IIS, 500, "nul-run", b""),
        (HP, 900, "junk", b'"\n"\r\n\x00,,"'),
        (EVENTS, 300, "junk", b"{\x00\xff"),
        (IIS, 0, "junk-file", b"#Fields: date time\n\xff\xfe"),
    ],
)
def test_fixed_damage_cases(tmp_path: Path, case):
    _check(tmp_path, *case)


def _check(root: Path, path: str, at: int, kind: str, junk: bytes) -> None:
    data = _build(root, path, at, kind, junk)
    attack_end = iis_log([ATTACK]).replace("\n", "\r\n").encode().index(ATTACK.encode()) + len(ATTACK) + 2

    def check() -> None:
        result = scan(root)
        assert result.verdict in ("COMPROMISED", "SUSPICIOUS", "NO EVIDENCE FOUND", "INCOMPLETE")
        if path != IIS or kind == "junk-file" or at >= attack_end:
            assert "proxylogon-ecp-js-post" in {f.rule.id for f in result.findings}, result.errors

    try:
        keep_failure(f"reader-{kind}", data, check)
    finally:
        shutil.rmtree(root, ignore_errors=True)
