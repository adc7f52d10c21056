"""The HTML report as a file: self-contained, locked down by its CSP, escaped, sections present or
"not computed", bounded in size."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from importlib.resources import files
from typing import Any

from exhunt.report import html_model
from exhunt.report.html import render, script_json
from tests.report.conftest import HOSTILE, big_document, with_optional_sections

VENDORED = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}


class Page(HTMLParser):
    """Elements, attributes and inline block contents of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.blocks: list[tuple[str, dict[str, str | None], str]] = []
        self.ids: dict[str, int] = {}
        self._open: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.ids[str(attributes["id"])] = self.ids.get(str(attributes["id"]), 0) + 1
        if tag in ("script", "style"):
            self._open, self._text = (tag, attributes), []

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == self._open[0]:
            self.blocks.append((tag, self._open[1], "".join(self._text)))
            self._open = None


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def section(html: str, id_: str) -> str:
    start = html.index(f'<section id="{id_}">')
    return html[start : html.index("</section>", start)]


def test_vendored_chart_library_is_the_pinned_release():
    vendor = files("exhunt.report") / "vendor"
    for name, digest in VENDORED.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()


def test_report_is_self_contained_and_its_policy_allows_only_its_own_blocks(hafnium: dict[str, Any]):
    html = render(hafnium)
    page = Page(html)
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp and "connect-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
    executable = [b for b in page.blocks if b[0] == "script" and b[1].get("type") != "application/json"]
    assert len(executable) == 2  # uPlot and the page script
    for _, _, body in executable:
        assert sha256(body) in csp.split("script-src")[1].split(";")[0]
    styles = [b for b in page.blocks if b[0] == "style"]
    assert len(styles) == 1 and sha256(styles[0][2]) in csp.split("style-src")[1].split(";")[0]
    # nothing to fetch: no src/href pointing anywhere but into the page, no <link>, no style attributes
    for tag, attrs in page.tags:
        assert tag != "link"
        assert "style" not in attrs, tag
        for name in ("src", "href", "action", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    assert max(page.ids.values()) == 1  # ids are unique (evidence toggles find their rows by id)


def test_chart_data_block_cannot_be_closed_by_log_text():
    text = script_json({"ua": "</script><script>alert(1)</script>", "sep": "a\u2028b\u2029c", "amp": "&lt;"})
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(str(text)) == {
        "ua": "</script><script>alert(1)</script>",
        "sep": "a\u2028b\u2029c",
        "amp": "&lt;",
    }


def test_hostile_fields_are_escaped_in_the_file(hostile: dict[str, Any]):
    html = render(hostile)
    page = Page(html)
    assert [t for t, _ in page.tags].count("script") == 3
    assert not any(t in ("img", "iframe", "object", "embed") for t, _ in page.tags)
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\x1b" not in html and "\u202e" not in html
    data = next(b for b in page.blocks if b[1].get("id") == "chart-data")[2]
    assert "</" not in data
    assert json.loads(data)["points"]


def test_absent_sections_say_not_computed_and_present_ones_are_shown(hafnium: dict[str, Any]):
    plain = render(hafnium)
    keys = {"incident": "incident", "mailboxes": "mailbox_access", "intrusion": "timeline", "leads": "leads",
            "fleet": "fleet"}  # fmt: skip
    assert hafnium.get("fleet") is None and hafnium.get("timeline")  # a single-host scan with analytics
    for id_, key in keys.items():
        assert ("not computed" in section(plain, id_)) == (hafnium.get(key) is None), id_
    rules = section(plain, "rules")  # the scan lists every rule it ran: the report shows them all
    assert "do not list every rule" not in rules and "does not list every rule" not in rules
    assert all(r["id"] in rules for r in hafnium["rules"]) and f"{len(hafnium['rules'])} rules ran" in rules

    doc = with_optional_sections(hafnium)
    html = render(doc)
    page = Page(html)
    for id_ in ("incident", "mailboxes", "intrusion", "leads", "fleet"):
        assert "not computed" not in section(html, id_), id_
    assert "ProxyLogon on 2021-02-26, web shells, LSASS dumped" in section(html, "incident")
    mailboxes = section(html, "mailboxes")
    assert (
        "ceo@example.org" in mailboxes
        and "cfo@example.org" in mailboxes
        and "48,000,000" in mailboxes
        and "FindItem; GetItem" in mailboxes
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mailboxes
    intrusion = section(html, "intrusion")
    links = [a for t, a in page.tags if t == "a" and "finding-link" in (a.get("class") or "")]
    assert [a["href"] for a in links] == ["#f1", "#f2"]  # the third step names no finding
    assert "LSASS dumped" in intrusion and "T1505.003" in intrusion
    fleet = section(html, "fleet")
    assert "EXCH02" in fleet and "one host hit within the first hour" in fleet and "proxylogon" in fleet
    assert re.search(
        r'<th class="hour" title="2021-02-26T04">04</th><th class="hour" title="2021-02-26T05">05</th>', fleet
    )
    heat = [a for t, a in page.tags if t == "td" and "heat" in (a.get("class") or "")]
    assert len(heat) == 2 * 2  # two hosts x two hours
    assert {a["class"] for a in heat} >= {"heat h5", "heat h0"}  # the busiest hour darkest, the empty one blank
    scanned = section(html, "scanned")
    assert "EXCH01/EventLogs/Security.evtx" in scanned and "truncated: 3 of 9 chunks &lt;script&gt;" in scanned
    assert scanned.count('class="cov-gap"') == 1 and "None: every file was read." in section(plain, "scanned")
    rules = section(html, "rules")
    assert "rule-with-no-hit" in rules and "builtin-2026.12" in rules and f"{len(doc['rules'])} rules ran" in rules


def test_big_result_stays_under_ten_megabytes_and_points_to_the_rest():
    doc = big_document(2000, 5)
    html = render(doc)
    size = len(html.encode("utf-8"))
    assert size < 10_000_000, size
    assert len(json.dumps(doc)) > 20_000_000  # the input is far bigger than the page
    page = Page(html)
    assert sum(1 for t, a in page.tags if t == "tr" and a.get("class") == "finding-row") == 2000
    shown = sum(1 for t, a in page.tags if t == "div" and a.get("class") == "evidence")
    assert 2000 < shown < 10_000  # sampled: one per finding first, then more for the most severe
    assert re.search(
        r'[1-4] more: exhunt query CASE\.duckdb "SELECT path, line, raw FROM evidence WHERE finding = \d+"', html
    )
    assert "35 more matching records were not sampled: scan with --all-evidence" in html
    findings = section(html, "findings")
    by_severity = dict(
        re.findall(r'<h3 class="sev-heading sev-(\w+)">.*?</h3>(.*?)(?=<h3 class="sev-heading|$)', findings, re.S)
    )
    counts = {s: body.count('class="evidence"') for s, body in by_severity.items()}
    assert counts["low"] == 500 and counts["critical"] > 500, counts  # every finding keeps one sample


def test_payloads_reach_the_report_through_real_findings(hostile: dict[str, Any]):
    agents = {
        e["record"].get(c) for f in hostile["findings"] for e in f["evidence"] for c in ("cs(User-Agent)", "UserAgent")
    }
    assert HOSTILE[0] in agents and HOSTILE[3] in agents
    assert any("<img" in str(a) and "onerror=alert(1)" in str(a) for a in agents)


def test_finding_rows_are_capped_most_severe_first(monkeypatch):
    monkeypatch.setattr(html_model, "MAX_FINDINGS", 90)
    doc = big_document(120, 0)
    html = render(doc)
    page = Page(html)
    assert sum(1 for t, a in page.tags if t == "tr" and a.get("class") == "finding-row") == 90
    assert "Findings (120)" in html and "30 more: exhunt query" in html
    assert 'id="findings-low"' not in html  # a quarter each: the 30 cut are exactly the low ones
    assert 'id="findings-medium"' in html
