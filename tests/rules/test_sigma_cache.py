"""The converted-Sigma cache: a warm load gives exactly the cold load's rules, and never a stale one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exhunt.rules import sigma_cache
from exhunt.rules.sigma_load import load_sigma

RULE = """
title: {title}
{id_line}
status: test
logsource: {{product: windows, category: process_creation}}
detection:
  sel: {{Image|endswith: '\\\\{image}'}}
  condition: sel
level: high
"""


def _rules(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.yml").write_text(RULE.format(title="A", id_line="id: 0b1c2d3e-0000-4000-8000-000000000001",
                                              image="whoami.exe"))  # fmt: skip
    (folder / "no_id.yml").write_text(RULE.format(title="B", id_line="", image="net.exe"))
    (folder / "broken.yml").write_text("title: broken\ndetection: [unclosed\n")
    (folder / "deprecated").mkdir(exist_ok=True)
    (folder / "deprecated" / "old.yml").write_text(RULE.format(title="C", id_line="", image="at.exe"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("EXHUNT_CACHE", str(root))
    return root


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.json"))


def test_warm_load_equals_cold_load(tmp_path, cache):
    _rules(tmp_path / "sigma")
    cold = load_sigma([tmp_path / "sigma"])
    assert len(_entries(cache)) == 4  # every file, the malformed and the deprecated one too
    warm = load_sigma([tmp_path / "sigma"])
    assert [r.id for r in cold.rules] == ["sigma:0b1c2d3e-0000-4000-8000-000000000001", "sigma:no_id"]
    assert warm.rules == cold.rules and [r.origin for r in warm.rules] == [r.origin for r in cold.rules]
    assert warm.skipped == cold.skipped
    assert {why.split(" ")[0] for _, _, why in cold.skipped} == {"invalid", "deprecated"}


def test_a_warm_load_never_imports_pysigma(tmp_path, cache):
    """Loading rules that were all converted before reads the cache only: pySigma (a quarter of a warm
    load of 2,400 rules) is imported for a file that must be converted, never otherwise."""
    import subprocess
    import sys

    _rules(tmp_path / "sigma")
    load_sigma([tmp_path / "sigma"])  # converted once, into the cache
    probe = (
        "import sys; from exhunt.rules.sigma_load import load_sigma; "
        f"load = load_sigma([{str(tmp_path / 'sigma')!r}]); "
        "print(len(load.rules), len(load.skipped), 'sigma' in sys.modules)"
    )
    warm = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert warm.stdout.split() == ["2", "2", "False"]
    (tmp_path / "sigma" / "new.yml").write_text(RULE.format(title="D", id_line="", image="klist.exe"))
    cold = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert cold.stdout.split() == ["3", "2", "True"]


def test_a_changed_or_renamed_file_is_converted_again(tmp_path, cache):
    _rules(tmp_path / "sigma")
    load_sigma([tmp_path / "sigma"])
    (tmp_path / "sigma" / "no_id.yml").write_text(RULE.format(title="B2", id_line="", image="nltest.exe"))
    again = load_sigma([tmp_path / "sigma"])
    assert "nltest.exe" in next(r for r in again.rules if r.id == "sigma:no_id").sql_params[0]
    (tmp_path / "sigma" / "no_id.yml").rename(tmp_path / "sigma" / "renamed.yml")
    assert "sigma:renamed" in {r.id for r in load_sigma([tmp_path / "sigma"]).rules}


def test_a_damaged_entry_or_unwritable_cache_only_costs_time(tmp_path, cache, monkeypatch):
    _rules(tmp_path / "sigma")
    cold = load_sigma([tmp_path / "sigma"])
    for entry in _entries(cache):
        entry.write_text("{not json")
    assert load_sigma([tmp_path / "sigma"]).rules == cold.rules
    entry = _entries(cache)[0]
    entry.write_text(json.dumps({"key": "another", "items": []}))  # an entry stored under the wrong name
    assert load_sigma([tmp_path / "sigma"]).rules == cold.rules
    for entry in _entries(cache):  # the right key, but contents that do not read back as rules
        key = json.loads(entry.read_text())["key"]
        entry.write_text(json.dumps({"key": key, "items": [{"title": "x", "rules": [{"id": 1, "bogus": 2}]}]}))
    assert load_sigma([tmp_path / "sigma"]).rules == cold.rules
    for entry in _entries(cache):
        key = json.loads(entry.read_text())["key"]
        entry.write_text(json.dumps({"key": key, "items": [{"title": "x", "rules": []}]}))
    assert load_sigma([tmp_path / "sigma"]).rules == cold.rules
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("EXHUNT_CACHE", str(blocker / "cache"))  # below a file: nothing can be written there
    assert load_sigma([tmp_path / "sigma"]).rules == cold.rules


def test_cached_rules_find_the_same_events(tmp_path, cache, collection):
    from exhunt.scan import ScanOptions, scan

    _rules(tmp_path / "sigma")
    line = {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Image": "C:\\Windows\\whoami.exe",
            "TimeCreated": "2021-03-03T01:02:03Z"}  # fmt: skip
    (collection / "events.jsonl").write_text(json.dumps(line) + "\n")
    options = ScanOptions(sigma=[tmp_path / "sigma"], analytics=False)
    cold = [f.rule.id for f in scan(collection, options).findings]
    warm = [f.rule.id for f in scan(collection, options).findings]
    assert "sigma:0b1c2d3e-0000-4000-8000-000000000001" in cold and warm == cold


def test_converter_key_names_the_code_versions():
    assert len(sigma_cache.converter_key()) == 24
