"""exhunt.synth Message Tracking logs: file names and headers, the mail flow, planted forwarding."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from exhunt.scan import ScanOptions, scan
from exhunt.synth import generate
from exhunt.synth.mailflow import FIELDS, FORWARD_TARGET

FOLDER = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/TransportRoles/Logs/MessageTracking"
NAME = re.compile(r"^MSGTRK(MS|MD)?(\d{10})-1\.LOG$")


def rows_of(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The five header lines and the data rows (as dicts) of one tracking log."""
    text = path.read_bytes().decode("utf-8")
    lines = text.split("\r\n")
    assert lines[-1] == "" and all("\n" not in ln for ln in lines), path
    head, body = lines[:5], [ln for ln in lines[5:] if ln]
    rows = [dict(zip(FIELDS, r, strict=True)) for r in csv.reader(io.StringIO("\n".join(body)))]
    return head, rows


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mt")
    return out, generate(out, seed=11, users=9, days=5, plant=frozenset({"postexploit"}))


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mt-benign")
    return out, generate(out, seed=11, users=9, days=5, benign_only=True)


def test_files_names_and_headers(planted: tuple[Path, dict]) -> None:
    out, _ = planted
    files = sorted((out / FOLDER).iterdir())
    kinds = {NAME.match(p.name).group(1) or "" for p in files}  # type: ignore[union-attr]
    assert kinds == {"", "MS", "MD"}
    days = {NAME.match(p.name).group(2)[:8] for p in files}  # type: ignore[union-attr]
    assert len(days) == 5 and len(files) == 15  # one file per service and day
    for p in files:
        head, rows = rows_of(p)
        assert head[0] == "#Software: Microsoft Exchange Server"
        assert re.fullmatch(r"#Version: 15\.01\.2106\.0(02|13)", head[1])
        assert head[2] == "#Log-type: Message Tracking Log"
        assert head[4] == "#Fields: " + ",".join(FIELDS) and len(FIELDS) == 30
        assert rows, p
        times = [r["date-time"] for r in rows]
        assert times == sorted(times) and head[3] == "#Date: " + times[0]
        # the name carries the UTC date and hour the file was created (its first event)
        assert NAME.match(p.name).group(2) == re.sub(r"\D", "", times[0])[:10]  # type: ignore[union-attr]
        events = {r["event-id"] for r in rows}
        prefix = NAME.match(p.name).group(1)  # type: ignore[union-attr]
        assert events <= {"MS": {"SUBMIT"}, "MD": {"DELIVER"}}.get(prefix, {"RECEIVE", "SEND", "REDIRECT"}), events


def test_mail_flow_is_plausible(planted: tuple[Path, dict]) -> None:
    out, _ = planted
    rows = [r for p in sorted((out / FOLDER).iterdir()) for r in rows_of(p)[1]]
    receive = [r for r in rows if r["event-id"] == "RECEIVE"]
    incoming = [r for r in receive if r["source"] == "SMTP"]
    assert incoming and all(r["directionality"] == "Incoming" for r in incoming)
    assert all(not r["sender-address"].endswith("@example.org") for r in incoming)
    submitted = [r for r in receive if r["source"] == "STOREDRIVER"]
    assert submitted and all(r["sender-address"].endswith("@example.org") for r in submitted)
    out_sends = [r for r in rows if r["event-id"] == "SEND" and r["connector-id"] == "Outbound to Internet"]
    assert any(r["message-subject"].startswith("RE: ") for r in out_sends)  # replies to partners
    delivered = {r["message-id"] for r in rows if r["event-id"] == "DELIVER"}
    assert {r["message-id"] for r in incoming} <= delivered
    # a subject with a comma is quoted and still parses into 30 fields (rows_of is strict)
    assert any("," in r["message-subject"] for r in rows)


def test_planted_forwarding_rows(planted: tuple[Path, dict]) -> None:
    out, key = planted
    traces = [t for t in key["traces"] if t["rule"] == "mail-forward-external"]
    assert {t["marker"] for t in traces} == {"MAILBOXRULE,RECEIVE", "ROUTING,REDIRECT"}
    exec_upn = "user0002@example.org"
    cache: dict[str, list[dict[str, str]]] = {}
    for t in traces:
        assert t["family"] == "postexploit" and t["source"] == "message-tracking" and t["required"]
        rows = cache.setdefault(t["path"], rows_of(out / t["path"])[1])
        row = rows[t["line"] - 6]  # five header lines before the first row
        assert row["date-time"] == t["time"] and row["recipient-address"] == FORWARD_TARGET
        if row["event-id"] == "REDIRECT":
            assert row["source"] == "ROUTING" and row["related-recipient-address"] == exec_upn
        else:
            assert row["source"] == "MAILBOXRULE" and row["sender-address"] == exec_upn
            original = [r for r in rows if r["internal-message-id"] == row["reference"]]
            assert original and exec_upn in original[0]["recipient-address"]
    rule_set = min(t["time"] for t in key["traces"] if t["rule"] == "cmdlet-mailbox-access-change")
    assert min(t["time"] for t in traces) > rule_set  # copies only after the inbox rule was made
    redirect_cmd = [t for t in key["traces"] if t["id"].startswith("px-mail-cmdlet")]
    assert len(redirect_cmd) == 1
    first_redirect = min(t["time"] for t in traces if "REDIRECT" in t["marker"])
    assert redirect_cmd[0]["time"] < first_redirect


def test_scan_finds_exactly_the_planted_rows(planted: tuple[Path, dict]) -> None:
    out, key = planted
    result = scan(out, ScanOptions(all_evidence=True, only=["mail-forward-external"]))
    found = {(e.path, e.line) for f in result.findings for e in f.evidence}
    planted_rows = {(t["path"], t["line"]) for t in key["traces"] if t["rule"] == "mail-forward-external"}
    assert planted_rows and found == planted_rows
    assert [f.group for f in result.findings] == [{"recipient-address": FORWARD_TARGET}]


def test_benign_collection_has_look_alikes_and_no_finding(benign: tuple[Path, dict]) -> None:
    out, key = benign
    assert key["traces"] == []
    kinds = {b["kind"] for b in key["benign"] if b.get("rule") == "mail-forward-external"}
    assert kinds == {"internal-mailbox-forward", "internal-inbox-rule-forward", "external-reply"}
    for b in key["benign"]:
        if b.get("rule") == "mail-forward-external":
            line = (out / b["path"]).read_bytes().decode("utf-8").split("\r\n")[b["line"] - 1]
            assert {"internal-mailbox-forward": ",ROUTING,REDIRECT,", "internal-inbox-rule-forward": ",MAILBOXRULE,",
                    "external-reply": ",Outbound to Internet,"}[b["kind"]] in line  # fmt: skip
    result = scan(out, ScanOptions(only=["mail-forward-external"]))
    assert result.findings == []


def test_deterministic_with_message_tracking(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, seed=2, users=7, days=2, plant=frozenset({"postexploit"}))
    generate(b, seed=2, users=7, days=2, plant=frozenset({"postexploit"}))
    names = sorted(p.name for p in (a / FOLDER).iterdir())
    assert names == sorted(p.name for p in (b / FOLDER).iterdir())
    for n in names:
        assert (a / FOLDER / n).read_bytes() == (b / FOLDER / n).read_bytes()
