"""make bench, HTML report: size of the report of a scan result and the time Debian's headless
chromium takes to show it (navigation until the timeline chart is drawn), median of a few loads.

    python bench/report.py [--json bench-data/bench-result.json] [--runs 3]

The result JSON is the one bench/run.py writes for the ~1 GB collection. Needs /usr/bin/chromium and
playwright (the dev extra); never downloads a browser.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from exhunt.report.html import render

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=REPO / "bench-data" / "bench-result.json")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not args.json.exists():
        sys.exit(f"bench report: {args.json} is missing (bench/run.py writes it)")
    if not CHROMIUM.exists():
        sys.exit("bench report: /usr/bin/chromium is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    doc = json.loads(args.json.read_text())
    started = time.perf_counter()
    html = render(doc)
    write_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        path.write_text(html, encoding="utf-8")
        loads = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            for _ in range(args.runs):
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.route("**/*", lambda r: r.continue_() if r.request.url == path.as_uri() else r.abort())
                started = time.perf_counter()
                page.goto(path.as_uri())
                page.wait_for_function("document.getElementById('timeline-chart').hasAttribute('data-marks')")
                loads.append(time.perf_counter() - started)
                page.close()
            browser.close()
    print(
        f"html report  {len(doc.get('findings') or [])} findings -> {len(html.encode()) / 1e6:.2f} MB, "
        f"written in {write_s:.2f} s; chromium shows it in median {statistics.median(loads):.2f} s "
        f"({', '.join(f'{s:.2f}' for s in loads)})"
    )


if __name__ == "__main__":
    main()
