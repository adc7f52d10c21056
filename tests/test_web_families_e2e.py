"""Acceptance: the web-request rules run on every web log. With the IIS logs deleted from a `--plant all`
collection, every trace the HttpProxy logs carry is still found at its HttpProxy line; with the HttpProxy
logs deleted instead, every trace in IIS is still found at its IIS line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exhunt.rules.model import load_rules
from exhunt.scan import ScanOptions, ScanResult, scan

IIS, HTTPPROXY = ("iis-frontend", "iis-backend"), ("httpproxy",)
WEB_RULES = {r.id for r in load_rules() if r.source == "web"}


def _locations(trace: dict) -> list[tuple[str, str, int | None]]:
    """(source, path, line) of every row the trace's request shows its rule in."""
    own = [(trace["source"], trace["path"], trace["line"])]
    return own + [(s["source"], s["path"], s["line"]) for s in trace.get("seen_in", [])]


def _scan_without(root: Path, tmp: Path, part: str, rules: set[str]) -> ScanResult:
    """Scan a copy of `root` that lacks every file under a folder named `part` (IIS or HttpProxy logs),
    with the rules whose traces are checked (the rest of the scan is covered by test_end_to_end)."""
    copy = tmp / root.name

    def skip(folder: str, names: list[str]) -> list[str]:  # the logs only: FrontEnd\HttpProxy holds the web apps
        return [n for n in names if n == part and (part != "HttpProxy" or Path(folder).name == "Logging")]

    shutil.copytree(root, copy, ignore=skip)
    logs = f"**/Logging/{part}/**" if part == "HttpProxy" else f"**/{part}/**"
    assert not any(p.match(logs) for p in copy.rglob("*")), f"{part} was not removed"
    assert part != "HttpProxy" or any(p.match("**/FrontEnd/HttpProxy/**") for p in copy.rglob("*"))
    return scan(copy, ScanOptions(all_evidence=True, only=sorted(rules)))


def _missed(key: dict, result: ScanResult, kept: tuple[str, ...]) -> tuple[list[str], set[str]]:
    found = {(f.rule.id, e.path, e.line) for f in result.findings for e in f.evidence}
    missed, checked = [], set()
    for trace in key["traces"]:
        if not trace["required"]:
            continue
        for source, path, line in _locations(trace):
            if source in kept:
                checked.add(trace["rule"])
                if (trace["rule"], path, line) not in found:
                    missed.append(f"{trace['rule']} {path}:{line} ({trace['description']})")
    return missed, checked


@pytest.mark.parametrize(
    ("deleted", "kept", "must_check"),
    [
        ("LogFiles", HTTPPROXY, {"proxylogon-ecp-js-post", "proxyshell-autodiscover-success", "owassrf-owa-powershell",
                                 "proxynotshell-autodiscover-powershell", "webshell-access", "proxylogon-ssrf-anchor"}),
        ("HttpProxy", IIS, {"proxylogon-ecp-js-post", "proxyshell-autodiscover-success", "owassrf-owa-powershell",
                            "proxynotshell-autodiscover-powershell", "webshell-access", "ssrf-machine-account-backend"}),
    ],
    ids=["iis-deleted", "httpproxy-deleted"],
)  # fmt: skip
def test_every_web_trace_survives_the_loss_of_the_other_log(
    planted_collection: tuple[Path, dict], tmp_path: Path, deleted: str, kept: tuple[str, ...], must_check: set[str]
):
    root, key = planted_collection
    rules = {t["rule"] for t in key["traces"] if any(source in kept for source, _, _ in _locations(t))}
    result = _scan_without(root, tmp_path, deleted, rules)
    missed, checked = _missed(key, result, kept)
    assert must_check <= checked, f"the answer key has no {kept} rows for {sorted(must_check - checked)}"
    assert not missed, "\n".join(missed)
    assert result.verdict == "COMPROMISED"
    web = [f for f in result.findings if f.rule.id in WEB_RULES and f.severity in ("high", "critical")]
    assert web, "no severe web-request finding from the remaining log"
