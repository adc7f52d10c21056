"""A user YARA rule that runs into the scan timeout costs only the user rules' matches on that file:
the built-in web-shell finding stands and the timeout is listed in errors[] for that file."""

from __future__ import annotations

from pathlib import Path

from exhunt.rules import yara as content
from exhunt.scan import ScanOptions, scan
from tests.conftest import write

SLOW = "rule slow { condition: for any i in (0..filesize) : ( for any j in (0..filesize) : ( uint8(i) == uint8(j) + 200 ) ) }"
SHELL = '<%@ Page Language="Jscript"%><%eval(Request.Item["z"],"unsafe");%>' + " " * 40_000


def test_a_user_rule_timeout_keeps_the_builtin_matches(collection: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(content, "SCAN_TIMEOUT", 1)
    shell = "EXCH01/C/inetpub/wwwroot/aspnet_client/system_web/chopper.aspx"
    write(collection, shell, SHELL)
    rule = tmp_path / "slow.yar"
    rule.write_text(SLOW)
    result = scan(collection, ScanOptions(yara=[rule]))
    found = {(f.rule.id, e.path) for f in result.findings for e in f.evidence}
    assert ("file-webshell-content", shell) in found
    timed_out = [e for e in result.errors if e["path"] == shell and "timed out" in e["reason"]]
    assert timed_out and "user YARA rules" in timed_out[0]["reason"] and "slow.yar" in timed_out[0]["reason"]


def test_match_lists_both_sets(tmp_path: Path):
    rule = tmp_path / "mine.yar"
    rule.write_text('rule mine { strings: $a = "eval(Request" condition: $a }')
    found = content.match(content.compile_rules([rule]), SHELL.encode())
    assert set(found.names) >= {"exhunt:exhunt_eval_request_unsafe", "user:mine"}
    assert found.problems == []
