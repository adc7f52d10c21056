"""Mailbox names, accounts and user agents come from the logs: the attacker writes them. They reach
the terminal escaped, and a crafted EWS log neither breaks the analytics nor lowers a theft."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from exhunt.analytics.render import render_timeline
from exhunt.analytics.summary import render_incident
from exhunt.scan import ScanOptions, scan
from exhunt.synth.formats import EWS_FIELDS, csv_row_from

EVIL = "vic\x1b[31mtim[bold red]@example.org\u202e"


def _ews_log(root: Path) -> None:
    rows = [
        csv_row_from(
            EWS_FIELDS,
            {
                "DateTime": f"2021-03-04T01:3{i}:00.000Z",
                "RequestId": f"00000000-0000-4000-8000-00000000000{i}",
                "AuthenticatedUser": "EXCH01$@corp.example",
                "ActAsUser": EVIL,
                "SoapAction": op,
                "HttpStatus": "200",
                "ResponseSize": "250000",
                "UserAgent": "ua\x1b]8;;http://x\x07",
                "ClientIpAddress": "10.10.1.20",
            },
        )
        for i, op in enumerate(["FindItem", "GetItem", "GetItem", "'; DROP TABLE x; --"])
    ]
    head = [
        "#Software: Microsoft Exchange Server", "#Version: 15.01.2106.002", "#Log-type: EWS Logs",
        "#Date: 2021-03-04T01:00:00.000Z", "#Fields: " + ",".join(EWS_FIELDS),
    ]  # fmt: skip
    path = root / "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/Logging/EWS/Ews_2021030401-1.LOG"
    path.parent.mkdir(parents=True)
    path.write_text("\r\n".join(head + rows) + "\r\n", encoding="utf-8")


def test_a_hostile_mailbox_name_is_still_a_theft_and_is_printed_inert(tmp_path):
    root = tmp_path / "col"
    _ews_log(root)
    doc = scan(root, ScanOptions()).to_dict()
    taken = [s for s in doc["mailbox_access"]["sessions"] if s["verdict"] == "taken"]
    assert len(taken) == 1 and taken[0]["path"] == "ssrf-ews"
    assert taken[0]["operations"] == {"FindItem": 1, "GetItem": 2} and taken[0]["bytes"] == 750_000
    cov = {c["path"]: c["status"] for c in doc["mailbox_access"]["coverage"]}
    assert cov["ssrf-ews"] == "partial" and cov["export-cmdlet"] == "not checked"
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200)
    render_incident(doc["incident"], console)
    render_timeline(doc["timeline"], doc["leads"], console)
    out = buf.getvalue()
    assert "vic" in out and "[bold red]" in out  # shown as text, not taken as markup
    assert "vic\x1b" not in out and "\\x1b[31mtim" in out  # the log's escape is shown, not sent
    assert "\x1b]8" not in out and "\u202e" not in out
