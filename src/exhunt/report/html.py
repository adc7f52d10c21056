"""The HTML report: one self-contained file for management, lawyers and the incident team.

Everything is inline (styles, the uPlot charting library, the page script, the data); a
Content-Security-Policy meta tag allows only those inline blocks, by their SHA-256, and data: images,
so the page cannot load or send anything over a network even if a log field smuggled markup in.
Every log-derived string goes through Jinja autoescaping (control characters and bidi overrides are
shown as escapes first); the chart's data is JSON in a `<script type="application/json">` block with
`<`, `>`, `&` and U+2028/U+2029 escaped, so a `</script>` in a user agent cannot end the block.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from importlib.resources import files
from typing import Any, TextIO

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from exhunt.report import html_model as model
from exhunt.report.common import findings, inert

NOT_COMPUTED = "not computed"


def script_json(data: object) -> Markup:
    """JSON that is safe inside a `<script type="application/json">` element."""
    text = json.dumps(data, ensure_ascii=True, default=str, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return Markup(text)  # every character that could end the element is escaped above


def _finalize(value: object) -> object:
    """Applied to every `{{ }}` before autoescaping: None prints as nothing, text is made inert."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return inert(value)


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("exhunt.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cut"] = model.cut
    return env


@cache
def _asset(folder: str, name: str) -> str:
    return (files("exhunt.report") / folder / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def inline_assets() -> dict[str, str]:
    """The page's style and scripts, exactly as they are put between their tags."""
    return {
        "style": _asset("vendor", "uPlot.min.css") + "\n" + _asset("static", "report.css"),
        "chart_js": _asset("vendor", "uPlot.iife.min.js"),
        "page_js": _asset("static", "report.js"),
    }


def content_security_policy(assets: dict[str, str]) -> str:
    """No network, no plugins, no forms; only the page's own inline blocks may run or style."""
    scripts = " ".join(_sha256(assets[k]) for k in ("chart_js", "page_js"))
    return (
        f"default-src 'none'; script-src {scripts}; style-src {_sha256(assets['style'])}; img-src data:; "
        "font-src data:; connect-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'"
    )


def context(doc: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows."""
    shown = model.sample_findings(doc)
    rules, rules_complete = model.rules_ran(doc)
    fleet = doc.get("fleet") if isinstance(doc.get("fleet"), dict) else None
    return {
        "doc": doc,
        "verdict": str(doc.get("verdict") or "UNKNOWN"),
        "verdict_class": str(doc.get("verdict") or "unknown").lower().replace(" ", "-"),
        "reason": str(doc.get("reason") or ""),
        "hosts": [str(h) for h in doc.get("hosts") or []],
        "stats": doc.get("stats") if isinstance(doc.get("stats"), dict) else {},
        "windows": [w for w in (doc.get("exposure") or {}).get("windows") or [] if isinstance(w, dict)],
        "exposure_text": [str(t) for t in (doc.get("exposure") or {}).get("text") or []],
        "axis": model.coverage_axis(doc),
        "coverage": [c for c in doc.get("coverage") or [] if isinstance(c, dict)],
        "errors": [e for e in doc.get("errors") or [] if isinstance(e, dict)],
        "missing": [str(m) for m in doc.get("missing") or []],
        "warnings": [str(w) for w in doc.get("warnings") or []],
        "groups": model.by_severity(shown),
        "finding_total": len(findings(doc)),
        "finding_rows": len(shown),
        "evidence_shown": sum(len(f.evidence) for f in shown),
        "case": doc.get("case"),
        "rules": rules,
        "rules_complete": rules_complete,
        "rules_version": doc.get("rules_version") or doc.get("ruleset_version"),
        "incident": doc.get("incident"),
        "mailbox_access": model.table(_sessions(doc.get("mailbox_access"))),
        "timeline": model.timeline_rows(doc.get("timeline")),
        "leads": model.table(doc.get("leads")),
        "fleet": fleet,
        "fleet_hosts": model.table((fleet or {}).get("hosts")),
        "fleet_heatmap": model.heatmap((fleet or {}).get("hourly")),
        "fleet_wave": (fleet or {}).get("wave"),
        "fleet_campaigns": model.table((fleet or {}).get("campaigns")),
        "chart": script_json(model.chart_data(doc, shown)),
        "generated": model.generated_at(),
        "not_computed": NOT_COMPUTED,
    }


def render(doc: dict[str, Any]) -> str:
    assets = inline_assets()
    template = _environment().get_template("report.html.j2")
    return template.render(
        **context(doc),
        csp=content_security_policy(assets),
        style=Markup(assets["style"]),  # package files, not data
        chart_js=Markup(assets["chart_js"]),
        page_js=Markup(assets["page_js"]),
    )


def write(doc: dict[str, Any], out: TextIO) -> None:
    out.write(render(doc))


def _sessions(section: object) -> object:
    """The mailbox-access rows: the analytics' `{"sessions": [...], ...}` or a bare list of rows."""
    if isinstance(section, dict):
        sessions = section.get("sessions")
        if isinstance(sessions, list):
            return [{k: v for k, v in s.items() if k != "evidence"} if isinstance(s, dict) else s for s in sessions]
    return section
