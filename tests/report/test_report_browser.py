"""The HTML report in Debian's headless chromium (Playwright, never a browser download): it renders
with no console error and no network request, its chart draws and reacts, evidence expands, it
survives being moved, and no script injected through a log field runs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exhunt.report.html import render
from exhunt.report.html_model import chart_data, sample_findings

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed at /usr/bin/chromium (make test and .ci/run install it with apt)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class Page:
    """A page that records every request (and refuses all but the report file itself), console
    errors, page errors and dialogs; window.alert/confirm/prompt are hooked before any script."""

    def __init__(self, browser: Any, url: str) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": 1300, "height": 900})
        self.page.add_init_script(
            "window.__alerts = [];"
            "for (const name of ['alert', 'confirm', 'prompt']) {"
            "  window[name] = (m) => { window.__alerts.push(name + ':' + String(m)); };"
            "}"
        )
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))

        def route(r: Any) -> None:
            if r.request.url == url:
                r.continue_()
            else:
                r.abort()

        self.page.route("**/*", route)
        self.page.goto(url)
        self.page.wait_for_function("document.getElementById('timeline-chart').hasAttribute('data-marks')")

    def close(self) -> None:
        self.page.close()


def open_report(browser: Any, doc: dict[str, Any], folder: Path) -> tuple[Page, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.html"
    path.write_text(render(doc), encoding="utf-8")
    return Page(browser, path.as_uri()), path


COLORED_PIXELS = """() => {
  const canvas = document.querySelector('#timeline-chart canvas');
  const ctx = canvas.getContext('2d');
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]);
    if (d[i + 3] > 200 && mx - mn > 80) n++;   // saturated: a severity mark, not grey axes or grid
  }
  return n;
}"""

POINT_POSITION = """(i) => {
  const holder = document.getElementById('timeline-chart');
  const u = holder.exhuntPlot;
  const x = u.data[0][i];
  let y = null;
  for (let s = 1; s < u.data.length; s++) if (u.data[s][i] != null) y = u.data[s][i];
  const box = u.over.getBoundingClientRect();
  return [box.left + u.valToPos(x, 'x'), box.top + u.valToPos(y, 'y')];
}"""


def test_hafnium_report_renders_offline_and_reacts(browser: Any, hafnium: dict[str, Any], tmp_path: Path):
    page, path = open_report(browser, hafnium, tmp_path / "first")
    p = page.page
    try:
        assert page.errors == []
        assert page.requests == [path.as_uri()]  # the document itself, nothing else
        assert p.inner_text("#verdict-text") == hafnium["verdict"] == "COMPROMISED"
        assert hafnium["reason"][:60] in p.inner_text("#verdict-reason")
        assert p.locator("tr.finding-row").count() == len(hafnium["findings"])
        assert p.locator("#rules-table tbody tr").count() == len(hafnium["rules"])  # every rule that ran

        # the chart: a canvas with as many marks as the data has points, drawn in severity colours
        points = chart_data(hafnium, sample_findings(hafnium))["points"]
        assert int(p.get_attribute("#timeline-chart", "data-marks")) == len(points) > 50
        p.locator("#timeline-chart").scroll_into_view_if_needed()
        assert p.evaluate(COLORED_PIXELS) > 200
        assert p.locator("#coverage-chart rect.cov-log").count() == len(hafnium["coverage"])

        # evidence expands on click, and collapses again
        first = p.locator("tbody.finding").first
        evidence = first.locator("tr.evidence-row")
        assert not evidence.is_visible()
        first.locator("tr.finding-row td").nth(2).click()
        assert evidence.is_visible()
        ev0 = hafnium["findings"][0]["evidence"][0]
        assert ev0["path"] in evidence.inner_text() and ev0["raw"][:40] in evidence.inner_text()
        first.locator("button.toggle").click()
        assert not evidence.is_visible()

        # hover a mark: the tooltip names its finding; click it: that finding opens
        p.locator("#timeline-chart").scroll_into_view_if_needed()
        x, y = p.evaluate(POINT_POSITION, len(points) // 2)
        p.mouse.move(x, y)
        tip = p.locator("#timeline-tip")
        assert tip.is_visible()
        shown = tip.inner_text()
        p.mouse.click(x, y)
        opened = p.locator("tbody.finding.highlight")
        opened.wait_for()
        assert opened.count() == 1
        assert opened.locator("tr.evidence-row").is_visible()
        number = int(opened.get_attribute("id")[1:])
        assert hafnium["findings"][number - 1]["title"] in shown  # the finding the tooltip named

        # drag to zoom: the x scale narrows; double-click resets it to the whole range
        p.locator("#timeline-chart").scroll_into_view_if_needed()
        box = p.evaluate(
            "(() => { const r = document.getElementById('timeline-chart').exhuntPlot.over.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
        )
        span = "(() => { const s = document.getElementById('timeline-chart').exhuntPlot.scales.x; return s.max - s.min; })()"
        before = p.evaluate(span)
        p.mouse.move(box[0] + box[2] * 0.3, box[1] + box[3] / 2)
        p.mouse.down()
        p.mouse.move(box[0] + box[2] * 0.6, box[1] + box[3] / 2, steps=5)
        p.mouse.up()
        assert p.evaluate(span) < before * 0.5
        p.mouse.dblclick(box[0] + box[2] * 0.5, box[1] + box[3] / 2)
        p.wait_for_timeout(400)
        assert p.locator("tbody.finding.highlight").count() == 1  # a double-click opens nothing
        assert p.evaluate(span) >= before * 0.99

        p.screenshot(path=str(tmp_path / "hafnium-report.png"), full_page=False)
        p.emulate_media(media="print")
        assert p.locator("tbody.finding").nth(3).locator("tr.evidence-row").is_visible()  # printed with evidence
        assert not p.locator("nav.toc").is_visible()
        assert page.errors == [] and page.dialogs == []
    finally:
        page.close()

    # the file alone is the report: moved elsewhere, it still renders fully
    moved = tmp_path / "elsewhere" / "deeper" / "copy.html"
    moved.parent.mkdir(parents=True)
    shutil.copy(path, moved)
    shutil.rmtree(tmp_path / "first")
    page = Page(browser, moved.as_uri())
    try:
        assert page.errors == [] and page.requests == [moved.as_uri()]
        assert page.page.inner_text("#verdict-text") == "COMPROMISED"
        assert page.page.locator("tr.finding-row").count() == len(hafnium["findings"])
        page.page.locator("#timeline-chart").scroll_into_view_if_needed()
        assert page.page.evaluate(COLORED_PIXELS) > 200
    finally:
        page.close()


def test_injected_markup_in_log_fields_stays_text(browser: Any, hostile: dict[str, Any], tmp_path: Path):
    page, _ = open_report(browser, hostile, tmp_path)
    p = page.page
    try:
        p.click("#expand-all")
        p.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        # hover every mark, so tooltips built from the data are shown too
        count = int(p.get_attribute("#timeline-chart", "data-marks"))
        p.locator("#timeline-chart").scroll_into_view_if_needed()
        for i in range(count):
            p.mouse.move(*p.evaluate(POINT_POSITION, i))
        p.wait_for_timeout(100)
        assert p.evaluate("window.__alerts") == [] and page.dialogs == []
        assert page.errors == []  # a script blocked by the CSP would log an error here
        dom = p.evaluate(
            """() => ({
              scripts: document.scripts.length,
              imgs: document.querySelectorAll('img, svg image, iframe, object, embed').length,
              handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on')),
              jsLinks: [...document.querySelectorAll('[href],[src],[action]')].filter(e => /^\\s*javascript:/i.test(e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action') || '')).length,
              text: document.body.innerText,
            })"""
        )
        assert dom["scripts"] == 3  # the data block, uPlot and the page script: nothing added
        assert dom["imgs"] == 0 and dom["handlers"] == [] and dom["jsLinks"] == 0
        text = dom["text"]
        for payload in (
            "<script>alert(1)</script>",
            '"><img src=x onerror=alert(1)>',
            "javascript:alert(1)",
            "</script><script>alert(2)</script>",
        ):
            assert payload in text  # shown to the analyst as text
        assert "\\x1b]0;pwned" in text and "\x1b" not in text  # escapes visible, never raw
        assert "\\u202e" in text and "\u202e" not in text  # bidi override shown, not applied
        assert page.requests == [p.url]
    finally:
        page.close()


@pytest.fixture(scope="module")
def fleet_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real fleet run (a local dask cluster of one worker) over a small synthetic fleet."""
    from exhunt.fleet.runner import FleetOptions, run_fleet
    from exhunt.synth.fleet import generate_fleet

    base = tmp_path_factory.mktemp("fleet-report")
    key = generate_fleet(base / "fleet", hosts=4, tenants=2, seed=2, users=3, days=3, hit=2)
    doc = run_fleet(base / "fleet", FleetOptions(out_dir=base / "out", workers=1), None)
    doc["_key"] = key
    return doc


def test_fleet_report_renders_offline_with_ranking_heatmap_and_wave(browser: Any, fleet_doc: dict, tmp_path: Path):
    page, path = open_report(browser, fleet_doc, tmp_path / "fleet")
    try:
        p = page.page
        assert page.errors == [] and page.requests == [path.as_uri()]
        assert p.locator("#fleet-hosts tbody tr").count() == len(fleet_doc["fleet"]["hosts"]) == 4
        assert p.locator("#fleet-heatmap tbody tr").count() == 4 and p.locator("#fleet-heatmap td.heat").count() > 0
        hit = {h.split("/")[-1] for h in fleet_doc["_key"]["campaign"]["hosts"]}
        text = p.inner_text("#fleet")
        assert "not computed" not in text and all(h in text for h in hit)
        p.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)
    finally:
        page.close()
