"""The literal gate skips only rules that cannot match: the literal sets read from Sigma conditions,
the Aho-Corasick search, and random rules on random events giving the same hits with and without it."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exhunt.rules import literal_gate, native
from exhunt.rules.literal_gate import _found, possible
from exhunt.rules.sigma_load import load_sigma
from exhunt.scan import ScanOptions, scan
from tests.conftest import write

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def _rule(tmp_path, detection: str, n: int = 0):
    path = tmp_path / "sigma" / f"r{n}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"title: r{n}\nid: 00000000-0000-4000-8000-{n:012d}\nstatus: test\n"
        f"logsource: {{product: windows, category: process_creation}}\ndetection:\n{detection}\nlevel: high\n"
    )
    return path


def _needs(tmp_path, detection: str):
    load = load_sigma([_rule(tmp_path, detection)])
    assert load.skipped == [], load.skipped
    return {r.view.needs for r in load.rules}


def test_literal_sets_of_conditions(tmp_path):
    ends = "  sel:\n    Image|endswith: '\\Rundll32.EXE'\n  condition: sel"
    # Sysmon's Image and Security 4688's NewProcessName: either may hold the text
    assert _needs(tmp_path, ends) == {(("Image", "\\rundll32.exe"), ("NewProcessName", "\\rundll32.exe"))}
    both = "  sel:\n    CommandLine|contains|all: ['abc', 'longest']\n  condition: sel"
    assert _needs(tmp_path, both) == {(("CommandLine", "longest"),)}
    wild = "  sel:\n    CommandLine: 'ab*wxyz?q'\n  condition: sel"
    assert _needs(tmp_path, wild) == {(("CommandLine", "wxyz"),)}
    ors = "  a:\n    CommandLine|contains: ['one', 'two']\n  b:\n    User: 'x'\n  condition: a or b"
    assert _needs(tmp_path, ors) == {(("CommandLine", "one"), ("CommandLine", "two"), ("User", "x"))}
    neg = "  a:\n    CommandLine|contains: 'keep'\n  b:\n    User: 'x'\n  condition: a and not b"
    assert _needs(tmp_path, neg) == {(("CommandLine", "keep"),)}
    for nothing in (
        "  a:\n    CommandLine|re: 'a.c'\n  condition: a",
        "  a:\n    CommandLine|cased: 'Abc'\n  condition: a",
        "  a:\n    User: 'x'\n  condition: not a",
        "  kw:\n    - 'mimikatz'\n  condition: kw",
        "  a:\n    CommandLine|contains: 'é'\n  condition: a",
        "  a:\n    CommandLine|contains: 'x'\n  b:\n    CommandLine|re: 'y'\n  condition: a or b",
    ):
        assert _needs(tmp_path, nothing) == {None}, nothing


def test_found_reports_overlapping_literals_across_passes(monkeypatch):
    monkeypatch.setattr(literal_gate, "TEXT_PER_PASS", 8)
    values = ["c:\\cmd.exe", None, "xx", "the end: rare"]
    assert _found({"cmd", "cmd.exe", "exe", "rare", "absent", "xxthe"}, values) == {"cmd", "cmd.exe", "exe", "rare"}


def test_possible_runs_rules_it_cannot_judge():
    values = {"Image": ["c:\\w\\cmd.exe"]}
    needs = [
        (("Image", "cmd.exe"),),
        (("Image", "nope"),),
        None,
        (("Missing", "x"),),
        (("Image", "nope"), ("Image", "w")),
    ]
    assert possible(values.get, needs) == [True, False, True, True, True]


# -- random rules on random events: the same hits with and without the gate -----------------------

_text = st.text(alphabet="aAb\\é", min_size=1, max_size=2)
_modifier = st.sampled_from(["", "|contains", "|startswith", "|endswith", "|contains|all"])
_value = st.one_of(_text, st.builds(lambda a, w, b: a + w + b, _text, st.sampled_from(["*", "?"]), _text))
_field = st.sampled_from(["Image", "CommandLine", "User"])
_item = st.tuples(_field, _modifier, st.lists(_value, min_size=1, max_size=3))
_selection = st.lists(_item, min_size=1, max_size=2)
_condition = st.sampled_from(["s1", "s1 and s2", "s1 or s2", "s1 and not s2", "1 of s*", "all of s*", "not s1"])
_rule_parts = st.tuples(_selection, _selection, _condition)
_event = st.fixed_dictionaries({}, optional={"Image": st.text("aAb\\éİ", max_size=6),
                                             "CommandLine": st.text("aAb\\éİ", max_size=6),
                                             "User": st.text("aAb\\éİ", max_size=3)})  # fmt: skip


def _detection(parts) -> str:
    s1, s2, condition = parts
    out = []
    for name, sel in (("s1", s1), ("s2", s2)):
        out.append(f"  {name}:")
        for field, mod, values in sel:
            out.append(f"    {field}{mod}: {json.dumps(values)}")
    out.append(f"  condition: {condition}")
    return "\n".join(out)


def _hits(collection, rules, gate: bool, monkeypatch) -> list:
    monkeypatch.setattr(native, "LITERAL_GATE", gate)
    result = scan(collection, ScanOptions(rules=rules, all_evidence=True))
    return sorted((f.rule.id, e.line) for f in result.findings for e in f.evidence)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_rule_parts, min_size=8, max_size=8), st.lists(_event, min_size=1, max_size=12))
def test_random_rules_hit_the_same_with_the_gate(tmp_path_factory, monkeypatch, rule_parts, events):
    root = tmp_path_factory.mktemp("gate")
    paths = [_rule(root, _detection(p), n) for n, p in enumerate(rule_parts)]
    rules = load_sigma(paths).rules
    lines = [
        json.dumps({"@timestamp": "2021-03-03T01:00:00.000Z", "winlog": {"channel": SYSMON, "event_id": 1,
                    "record_id": i, "computer_name": "EXCH01", "event_data": e}})
        for i, e in enumerate(events, 1)
    ]  # fmt: skip
    collection = root / "c"
    write(collection, "EXCH01/EventLogs/winlogbeat.ndjson", "\n".join(lines) + "\n", crlf=False)
    assert _hits(collection, rules, True, monkeypatch) == _hits(collection, rules, False, monkeypatch)


def test_the_random_rules_do_hit(tmp_path, monkeypatch):
    """The generators above give rules that match (else the comparison would prove nothing)."""
    rule = _rule(tmp_path, _detection(([("Image", "|endswith", ["A\\b"])], [("User", "", ["x"])], "s1 and not s2")))
    write(tmp_path / "c", "EXCH01/EventLogs/winlogbeat.ndjson", json.dumps({"@timestamp": "2021-03-03T01:00:00.000Z",
          "winlog": {"channel": SYSMON, "event_id": 1, "event_data": {"Image": "xa\\B"}}}) + "\n", crlf=False)  # fmt: skip
    rules = load_sigma([rule]).rules
    assert _hits(tmp_path / "c", rules, True, monkeypatch) == _hits(tmp_path / "c", rules, False, monkeypatch) != []
