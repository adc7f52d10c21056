"""Real public samples give their expected findings (tests/data/real/expected.yaml, sources in its
README), the team's samples in ../shared/data too, and benign real material gives nothing severe.

A sample whose expectation names a piece exhunt does not have yet (`needs:`) is a strict xfail: it
turns into a failure once that piece lands, and the `needs:` line is then removed."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from exhunt.rules.sigma_load import load_sigma
from exhunt.scan import ScanOptions, ScanResult, scan, select_rules
from tests.conftest import SHARED, httpproxy_log, shared_path, write

REAL = Path(__file__).parent / "data" / "real"
EXPECTED: dict[str, Any] = yaml.safe_load((REAL / "expected.yaml").read_text(encoding="utf-8"))
SEVERE = ("high", "critical")
KEYS = {"source", "origin", "shows", "must", "must_not", "no_severe", "needs", "covered_by", "map"}


@cache
def builtin_rules() -> tuple:
    """The default scan's rules, loaded once (parsing the YAML is half of a small scan's time)."""
    return tuple(select_rules(ScanOptions()))


def scan_sample(path: Path, extra_rules: tuple = (), maps: list[Path] | None = None) -> ScanResult:
    """What `exhunt scan PATH [--map FILE]` gives: the default rules and the analytics."""
    return scan(path, ScanOptions(rules=[*builtin_rules(), *extra_rules], analytics=True, maps=maps))


def check(result: ScanResult, spec: dict[str, Any]) -> None:
    """The sample's findings against its expectation; every required finding has located evidence."""
    fired = {f.rule.id: f for f in result.findings}
    summary = sorted((f.rule.id, f.severity) for f in result.findings)
    missing = [r for r in spec.get("must", []) if r not in fired]
    assert not missing, f"missing {missing}; got {summary}; errors {result.errors}"
    for rule in spec.get("must", []):
        assert all(e.path and (e.line or e.record_id) for e in fired[rule].evidence), (rule, fired[rule].evidence)
    unwanted = [r for r in spec.get("must_not", []) if r in fired]
    assert not unwanted, f"{unwanted} must not fire; got {summary}"
    if spec.get("no_severe"):
        assert not [f for f in result.findings if f.severity in SEVERE], summary
    assert result.errors == [], result.errors


def cases(section: dict[str, dict[str, Any]]) -> list:
    """One pytest case per entry scanned here (not those another test already scans)."""
    out = []
    for name, spec in section.items():
        if spec.get("covered_by"):
            continue
        marks = [pytest.mark.xfail(strict=True, reason=f"needs {spec['needs']}")] if spec.get("needs") else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


# -- tests/data/real -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases(EXPECTED["samples"]))
def test_real_sample_gives_its_expected_findings(name: str) -> None:
    spec = EXPECTED["samples"][name]
    check(scan_sample(REAL / name, maps=[REAL / spec["map"]] if spec.get("map") else None), spec)


def test_every_sample_is_listed_described_and_small() -> None:
    """Each file of tests/data/real belongs to one entry with a known source and named in the README;
    the whole folder stays under 3 MB."""
    readme = (REAL / "README.md").read_text(encoding="utf-8")
    samples = EXPECTED["samples"]
    files = [p for p in REAL.rglob("*") if p.is_file() and p.name not in ("README.md", "expected.yaml")]
    maps = {spec["map"] for spec in samples.values() if spec.get("map")}
    assert all((REAL / m).is_file() for m in maps), maps
    files = [p for p in files if p.relative_to(REAL).as_posix() not in maps]  # a map belongs to its entries
    for p in files:
        rel = p.relative_to(REAL).as_posix()
        owner = [n for n in samples if rel == n or rel.startswith(n + "/")]
        assert len(owner) == 1, f"{rel} belongs to {owner}"
    for name, spec in samples.items():
        assert (REAL / name).exists(), name
        assert set(spec) <= KEYS, (name, set(spec) - KEYS)
        assert spec["source"] in EXPECTED["sources"], name
        assert spec.get("must") or spec.get("no_severe"), f"{name} expects nothing"
        assert Path(name).name in readme, f"{name} is not in the README"
    for key, source in EXPECTED["sources"].items():
        assert source.get("licence") and source.get("url"), key
    assert sum(p.stat().st_size for p in files) < 3_000_000


def test_entries_covered_elsewhere_expect_the_same_there() -> None:
    """The OTRF subsets are scanned by tests/test_intrusion.py: both lists agree."""
    from tests.test_intrusion import REAL_EXPECTED

    covered = {n: s["must"] for n, s in EXPECTED["samples"].items() if s.get("covered_by")}
    assert covered == {n: [rule] for n, (rule, _) in REAL_EXPECTED.items()}


def test_helsecert_rows_in_their_httpproxy_shape_give_the_proxylogon_findings(collection: Path) -> None:
    """The real Test-ProxyLogon rows, put back in the HttpProxy\\Ecp log they were exported from,
    are found today: ServerInfo~ SSRF and the OAB virtual-directory reset answered 200 (a scan of
    HttpProxy logs alone once failed in the analytics on such rows)."""
    export = REAL / "helsecert-proxylogon/Test-ProxyLogonLogs/servernavn-Cve-2021-26855.csv"
    lines = export.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#TYPE ")
    rows = [{**row, "Protocol": "Ecp"} for row in csv.DictReader(lines[1:])]
    log = "EXCH/C/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Ecp/HttpProxy_2021030306-1.LOG"
    write(collection, log, httpproxy_log(rows))
    result = scan_sample(collection)
    assert result.errors == []
    found = {f.rule.id: f for f in result.findings}
    assert found["proxylogon-ssrf-anchor"].count == 9  # every ServerInfo~ row but the two 241/none refusals
    (reset,) = found["proxylogon-vdir-reset"].evidence
    assert "schema=ResetOABVirtualDirectory#" in reset.raw and reset.path == log
    assert result.verdict == "COMPROMISED"


# -- ../shared/data ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases(EXPECTED["shared"]))
def test_shared_sample_gives_its_expected_findings(name: str) -> None:
    path = shared_path("data", *name.split("/"))
    result = scan_sample(path)
    check(result, EXPECTED["shared"][name])
    if name == "exchange-config":
        assert result.stats.records > 0, "the configuration files were not read"


def test_every_shared_log_and_event_file_has_an_expectation() -> None:
    """A new log or EVTX in ../shared/data without an expected finding fails here."""
    data = shared_path("data")
    listed = list(EXPECTED["shared"])
    for p in data.rglob("*"):
        if p.suffix.lower() not in (".evtx", ".log") or not p.is_file():
            continue
        rel = p.relative_to(data).as_posix()
        assert any(rel == n or rel.startswith(n + "/") for n in listed), f"{rel} has no expectation"


def test_shared_sigma_rules_fire_on_the_shared_samples(tmp_path: Path) -> None:
    """The community Sigma rules that describe these samples fire on them, beside the built-in
    rules (one scan of all of them; Sigma matches one event at a time, so evidence paths tell them apart)."""
    spec = EXPECTED["shared_sigma"]
    sigma = load_sigma([shared_path("data", *r.split("/")) for r in spec["rules"]])
    assert sigma.skipped == []
    for name in spec["samples"]:
        src = SHARED / "data" / name
        for f in [src] if src.is_file() else sorted(src.glob("*.evtx")):
            write(tmp_path, f"HOST/EventLogs/{f.name}", f.read_bytes())
    result = scan_sample(tmp_path, tuple(sigma.rules))
    assert result.errors == []
    by_file: dict[str, set[str]] = {}
    for f in result.findings:
        for e in f.evidence:
            by_file.setdefault(e.path.rsplit("/", 1)[-1], set()).add(f.rule.id)
    for name, rules in spec["samples"].items():
        src = SHARED / "data" / name
        (evtx,) = [src] if src.is_file() else sorted(src.glob("*.evtx"))
        assert set(rules) <= by_file.get(evtx.name, set()), (name, by_file.get(evtx.name))
