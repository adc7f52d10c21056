"""Timesketch JSONL, ECS NDJSON, STIX 2.1 and CSV exports: each checked against its format's rules,
on the synthetic HAFNIUM server and on the hostile collection; the CLI keeps machine output on
stdout and raw escapes off the terminal."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import stix2

from exhunt.report import csv_writer, ecs, stix, timesketch
from exhunt.report.common import micros
from exhunt.writers import WRITERS, writer

DATA = Path(__file__).resolve().parents[1] / "data"
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")
DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r")


def written(module: Any, doc: dict[str, Any]) -> str:
    out = io.StringIO()
    module.write(doc, out)
    return out.getvalue()


def test_every_format_is_registered():
    for name in ("html", "timesketch", "ecs", "stix", "csv"):
        assert name in WRITERS and callable(writer(name))


# --- Timesketch ----------------------------------------------------------------------------------


def check_timesketch(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert isinstance(line["message"], str) and line["message"]
        assert ISO_WITH_OFFSET.match(line["datetime"]), line["datetime"]
        when = datetime.fromisoformat(line["datetime"])
        assert when.tzinfo is not None
        assert isinstance(line["timestamp"], int) and line["timestamp"] == micros(when)
        assert isinstance(line["timestamp_desc"], str) and line["timestamp_desc"]
        assert all(not isinstance(v, dict | list) for v in line.values())  # flat attributes
    return lines


def test_timesketch_lines_have_the_required_fields(hafnium: dict[str, Any]):
    lines = check_timesketch(written(timesketch, hafnium))
    findings = [f for f in hafnium["findings"] if f["first_seen"]]
    evidence = [e for f in findings for e in f["evidence"]]
    assert sum(line["data_type"] == "exhunt:finding" for line in lines) == len(findings)
    assert sum(line["data_type"] == "exhunt:evidence" for line in lines) == len(evidence)
    shell = next(x for x in lines if x["data_type"] == "exhunt:evidence" and x["rule"] == "proxylogon-ecp-js-post")
    assert shell["cs-uri-stem"] == "/ecp/y.js" and shell["evidence_path"].endswith(".log")  # record fields kept
    assert shell["timestamp_desc"] == "Event Recorded"


def test_timesketch_keeps_colliding_record_fields(hostile: dict[str, Any]):
    lines = check_timesketch(written(timesketch, hostile))
    event = next(x for x in lines if x["data_type"] == "exhunt:evidence" and x["rule"] == "cmdlet-vdir-script")
    assert event["record_message"].startswith("Cmdlet succeeded")  # the record's own `message` field
    assert "\x1b" not in written(timesketch, hostile)


# --- ECS -----------------------------------------------------------------------------------------


def ecs_fields() -> dict[str, str]:
    path = DATA / f"ecs-{ecs.ECS_VERSION}-fields.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {name: kind for name, kind in rows}


def leaves(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in doc.items():
        name = prefix + key
        out += leaves(value, name + ".") if isinstance(value, dict) else [(name, value)]
    return out


def check_ecs(text: str) -> list[dict[str, Any]]:
    known = ecs_fields()
    docs = [json.loads(line) for line in text.splitlines()]
    for doc in docs:
        assert doc["ecs"]["version"] == ecs.ECS_VERSION
        for name, value in leaves(doc):
            if name.startswith("labels."):  # labels is ECS's object of custom keyword pairs
                assert isinstance(value, str) and "." not in name[7:], name
                continue
            assert name in known, f"{name} is not an ECS {ecs.ECS_VERSION} field"
            kind = known[name]
            for item in value if isinstance(value, list) else [value]:
                if kind == "ip":
                    ipaddress.ip_address(item)
                elif kind in ("long", "integer"):
                    assert isinstance(item, int) and not isinstance(item, bool), name
                elif kind == "float":
                    assert isinstance(item, float | int), name
                elif kind == "date":
                    assert ISO_WITH_OFFSET.match(item), (name, item)
                elif kind in ("keyword", "wildcard", "match_only_text", "constant_keyword"):
                    assert isinstance(item, str), name
    return docs


def test_ecs_uses_only_fields_of_its_version(hafnium: dict[str, Any]):
    docs = check_ecs(written(ecs, hafnium))
    alerts = [d for d in docs if d["event"]["kind"] == "alert"]
    assert len(alerts) == len(hafnium["findings"])
    web = next(d for d in docs if d["event"]["kind"] == "event" and d["rule"]["id"] == "proxylogon-ecp-js-post")
    assert web["url"]["path"] == "/ecp/y.js" and web["source"]["ip"] == "130.255.189.21"
    assert web["http"]["request"]["method"] == "POST" and "user_agent" in web
    process = next(d for d in docs if d["event"]["kind"] == "event" and d["rule"]["id"] == "process-webserver-shell")
    assert process["process"]["executable"].lower().endswith("cmd.exe")
    shell = next(d for d in docs if d["event"]["kind"] == "event" and d["rule"]["id"] == "file-webshell-location")
    assert len(shell["file"]["hash"]["sha256"]) == 64 and shell["file"]["path"].startswith("C:\\")


def test_ecs_drops_values_that_do_not_fit_the_field_type(hostile: dict[str, Any]):
    docs = check_ecs(written(ecs, hostile))
    addresses = [d.get("source", {}).get("ip") for d in docs]
    assert "203.0.113.7" in addresses
    assert not any(a and "<" in a for a in addresses)  # a "client IP" holding markup is not an ip field


# --- STIX ----------------------------------------------------------------------------------------


def check_stix(text: str) -> stix2.Bundle:
    parsed = stix2.parse(text, allow_custom=False)
    assert parsed.type == "bundle"
    for obj in parsed.objects:  # every object validates on its own too
        again = stix2.parse(obj.serialize(), allow_custom=False)
        assert again.id == obj.id and again.spec_version == "2.1"
    ids = {o.id for o in parsed.objects}
    for obj in parsed.objects:
        for ref in [
            getattr(obj, k, None) for k in ("sighting_of_ref", "source_ref", "target_ref", "created_by_ref", "src_ref")
        ]:
            assert ref is None or ref in ids, ref
        for key in ("object_refs", "observed_data_refs", "where_sighted_refs"):
            assert all(ref in ids for ref in getattr(obj, key, None) or []), key
    return parsed


def of_type(bundle: stix2.Bundle, kind: str) -> list[Any]:
    return [o for o in bundle.objects if o.type == kind]


def test_stix_bundle_parses_back_and_links_up(hafnium: dict[str, Any]):
    bundle = check_stix(written(stix, hafnium))
    patterns = [i.pattern for i in of_type(bundle, "indicator")]
    assert "[ipv4-addr:value = '130.255.189.21']" in patterns
    assert not any("127.0.0.1" in p or "10.10.1.20" in p for p in patterns)  # loopback and the server itself
    shells = [
        e["record"]
        for f in hafnium["findings"]
        if f["kind"] == "webshell"
        for e in f["evidence"]
        if e["record"].get("sha256")
    ]
    assert shells and all(f"[file:hashes.'SHA-256' = '{r['sha256']}']" in patterns for r in shells)
    assert any("User-Agent" in p and "python-requests/2.25.1" in p for p in patterns)
    sightings = of_type(bundle, "sighting")
    assert len(sightings) == len(patterns)
    ip_sighting = next(
        s
        for s in sightings
        if s.sighting_of_ref == next(i.id for i in of_type(bundle, "indicator") if "130.255.189.21" in i.pattern)
    )
    assert ip_sighting.count >= 19 and ip_sighting.observed_data_refs
    report = of_type(bundle, "report")[0]
    assert report.name.startswith("exhunt: COMPROMISED")
    assert set(report.object_refs) == {o.id for o in bundle.objects if o.type != "report"}
    assert {"CVE-2021-26855", "CVE-2021-27065"} <= {v.name for v in of_type(bundle, "vulnerability")}
    assert of_type(bundle, "relationship")


def test_stix_patterns_escape_hostile_values(hostile: dict[str, Any]):
    bundle = check_stix(written(stix, hostile))
    agents = [i for i in of_type(bundle, "indicator") if "User-Agent" in i.pattern]
    assert any("<script>alert(1)</script>" in i.pattern for i in agents)
    assert any(i.pattern.endswith("= 'quote\\'and\\\\backslash\\']']") for i in agents)  # ' and \ escaped


# --- CSV -----------------------------------------------------------------------------------------


def check_csv(text: str, doc: dict[str, Any]) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == csv_writer.COLUMNS
    assert len(rows) - 1 == sum(max(1, len(f["evidence"])) for f in doc["findings"])
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS_START), cell[:40]
            assert "\x1b" not in cell
    return rows[1:]


def test_csv_has_findings_and_evidence(hafnium: dict[str, Any]):
    rows = check_csv(written(csv_writer, hafnium), hafnium)
    first = dict(zip(csv_writer.COLUMNS, rows[0], strict=True))
    assert first["finding"] == "1" and first["rule"] == hafnium["findings"][0]["rule"]
    assert first["raw"] == hafnium["findings"][0]["evidence"][0]["raw"]


def test_csv_of_hostile_values_is_spreadsheet_safe(hostile: dict[str, Any]):
    doc = json.loads(json.dumps(hostile))
    doc["findings"][0]["evidence"][0]["raw"] = '=HYPERLINK("http://x","click")'
    doc["findings"][0]["evidence"][0]["path"] = "+cmd|' /C calc'!A0"
    doc["findings"][0]["title"] = "@SUM(1)"
    doc["findings"][0]["note"] = "\r-1"
    rows = check_csv(written(csv_writer, doc), doc)
    assert rows[0][csv_writer.COLUMNS.index("raw")] == '\'=HYPERLINK("http://x","click")'


# --- the CLI -------------------------------------------------------------------------------------


def exhunt(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "exhunt", *args], capture_output=True, env=env, timeout=240, check=False
    )


def test_cli_writes_every_format_and_no_raw_escape_reaches_the_terminal(hostile_dir: Path, tmp_path: Path):
    out = {name: tmp_path / f"out.{name}" for name in ("html", "timesketch", "ecs", "stix")}
    case = tmp_path / "case.duckdb"
    run = exhunt(
        "scan", str(hostile_dir), "--case", str(case), "--out", "csv=-", *(f"--out={k}={v}" for k, v in out.items())
    )
    assert run.returncode == 1, run.stderr.decode()
    assert b"\x1b" not in run.stdout and b"\x1b" not in run.stderr  # the summary shows \x1b, never ESC
    assert b"COMPROMISED" in run.stderr  # the terminal summary goes to stderr when stdout carries data
    assert run.stdout.decode().startswith(",".join(csv_writer.COLUMNS))  # only the CSV on stdout
    for path in out.values():
        assert path.stat().st_size > 1000 and b"\x1b" not in path.read_bytes()
    # a saved case gives the same exports
    again = exhunt("report", str(case), "--out", f"html={tmp_path / 'case.html'}", "--out", "stix=-")
    assert again.returncode == 0, again.stderr.decode()
    check_stix(again.stdout.decode())
    assert "COMPROMISED" in (tmp_path / "case.html").read_text()


def test_every_writer_survives_sparse_and_odd_documents():
    odd = {
        "verdict": "INCOMPLETE", "hosts": None, "coverage": [{"family": "log_iis"}], "errors": [{"path": "x", "line": None, "reason": "bad"}],
        "findings": [
            {},
            {"rule": "r", "severity": "bogus", "count": "many", "group": ["not", "a", "dict"], "evidence": [None, {}, {"record": "text", "time": "not a time"}]},
            {"rule": "t", "severity": "high", "kind": "exploitation", "first_seen": "2021-03-03T01:00:00", "cves": None,
             "group": {"c-ip": "999.1.1.1"}, "evidence": [{"record": {"c-ip": "::1", "cs(User-Agent)": "-", "kind": "file", "sha256": "zz"}}]},
        ],
        "timeline": "not a list", "fleet": {"hourly": [{"host": "a", "hour": "h", "count": "x"}]},
    }  # fmt: skip
    for name in ("html", "timesketch", "ecs", "stix", "csv", "json"):
        for doc in ({}, odd):
            out = io.StringIO()
            writer(name)(doc, out)
            assert out.getvalue() or name in ("timesketch", "ecs"), name  # an empty result has no events
    check_timesketch(written(timesketch, odd))
    check_ecs(written(ecs, odd))
    check_stix(written(stix, odd))
    check_csv(written(csv_writer, odd), {"findings": [{"evidence": []}, {"evidence": [1, 2]}, {"evidence": [1]}]})


def test_stix_export_feeds_back_into_exhunts_own_ioc_reader(hafnium: dict[str, Any], tmp_path: Path):
    from exhunt.iocs.feeds import load_feed

    path = tmp_path / "case-iocs.json"
    path.write_text(written(stix, hafnium))
    iocs = load_feed(path)
    ips = {i.value for i in iocs.indicators if i.type == "ip"}
    hashes = {i.value for i in iocs.indicators if i.type == "sha256"}
    assert "130.255.189.21" in ips and "10.10.1.20" not in ips
    shells = {
        e["record"]["sha256"]
        for f in hafnium["findings"]
        if f["kind"] == "webshell"
        for e in f["evidence"]
        if e["record"].get("sha256")
    }
    assert shells <= hashes
