"""Log fields are attacker-controlled: nothing they hold may drive the terminal, markup or a spreadsheet."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from exhunt.output.safe import csv_cell, terminal_text
from exhunt.output.terminal import render
from exhunt.scan import scan
from tests.conftest import INSTALL, httpproxy_log, write


def shown(text: str) -> str:
    buf = io.StringIO()
    Console(file=buf, width=300, force_terminal=True, color_system=None).print(terminal_text(text), end="")
    return buf.getvalue()


def test_terminal_text_neutralises_escapes_and_markup():
    assert shown("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert shown("[bold]x[/bold]") == "[bold]x[/bold]"
    assert "\u202e" not in terminal_text("evil\u202etxt.aspx")
    assert len(terminal_text("a" * 1000, limit=50)) < 80


def test_csv_cells_cannot_start_a_formula():
    for bad in ("=cmd|' /C calc'!A0", "+1", "-1+1", "@SUM(1)", "\t=1"):
        assert csv_cell(bad).startswith("'")
    assert csv_cell("normal") == "normal" and csv_cell(None) == ""


def test_hostile_log_values_reach_the_terminal_inert(collection: Path):
    ua = "\x1b]0;pwned\x07\x1b[2J[link=http://evil]click[/link]"
    write(collection, f"{INSTALL}/Logging/HttpProxy/Ecp/HttpProxy_2021030301-1.LOG",
          httpproxy_log([{"DateTime": "2021-03-03T01:00:00.000Z", "AnchorMailbox": "ServerInfo~a]@x:444/mapi/?#" + ua,
                          "ClientIpAddress": ua, "HttpStatus": "200"}]))  # fmt: skip
    result = scan(collection)
    buf = io.StringIO()
    render(result, Console(file=buf, width=200, force_terminal=True, color_system=None))
    out = buf.getvalue()
    assert "\x1b]0;" not in out and "\x07" not in out and "\x1b[2J" not in out
    assert "\\x1b]0;pwned" in out
    assert "[link=http://evil]" in out  # shown literally, not interpreted
