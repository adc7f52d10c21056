"""mail-forward-external on hand-written Message Tracking rows: what counts as leaving the domain."""

from __future__ import annotations

from pathlib import Path

from exhunt.scan import ScanOptions, scan
from exhunt.synth.mailflow import FIELDS
from tests.conftest import write

LOG = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/TransportRoles/Logs/MessageTracking/MSGTRK2021030501-1.LOG"


def row(source: str, event: str, rcpt: str, related: str = "", sender: str = "boss@example.org") -> str:
    v = {"date-time": "2021-03-05T01:00:00.000Z", "source": source, "event-id": event, "recipient-address": rcpt,
         "related-recipient-address": related, "sender-address": sender}  # fmt: skip
    return ",".join(v.get(f, "") for f in FIELDS)


def test_outside_recipients_only(tmp_path: Path):
    rows = [
        row("ROUTING", "REDIRECT", "drop@evil.example", related="boss@example.org"),  # line 6: hit
        row("ROUTING", "REDIRECT", "colleague@EXAMPLE.org", related="boss@example.org"),  # same domain, any case
        row("MAILBOXRULE", "RECEIVE", "colleague@example.org;drop@evil.example"),  # line 8: one recipient outside
        row("MAILBOXRULE", "RECEIVE", "a@example.org;b@example.org"),
        row("SMTP", "SEND", "partner@fabrikam.example"),  # ordinary outbound mail is not forwarding
        row("STOREDRIVER", "RECEIVE", "partner@fabrikam.example"),
        row("ROUTING", "REDIRECT", "x@sub.example.org", related="boss@example.org"),  # line 12: subdomain is outside
        row("ROUTING", "REDIRECT", "x@evil.example", related="", sender=""),  # nothing to compare with
    ]
    header = [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.01.2106.002",
        "#Log-type: Message Tracking Log",
        "#Date: 2021-03-05T01:00:00.000Z",
        "#Fields: " + ",".join(FIELDS),
    ]
    write(tmp_path, LOG, "\r\n".join(header + rows) + "\r\n")
    result = scan(tmp_path, ScanOptions(all_evidence=True, only=["mail-forward-external"]))
    assert sorted((e.path, e.line) for f in result.findings for e in f.evidence) == [(LOG, 6), (LOG, 8), (LOG, 12)]
    assert {f.severity for f in result.findings} == {"medium"}
