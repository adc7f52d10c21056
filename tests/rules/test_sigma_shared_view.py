"""Sigma rules on events run over one shared field view, with long value lists as one pattern: the
same hits as each rule alone with every value its own condition."""

from __future__ import annotations

import json

import pytest

from exhunt.rules import sigma as sigma_mod
from exhunt.rules.sigma_load import load_sigma
from exhunt.scan import ScanOptions, scan

RULES = {
    "ends.yml": ("Image|endswith", ["\\a.exe", "\\b (x).exe", "\\c[1].exe", "\\d+e.exe", "\\é.exe"]),
    "starts.yml": ("CommandLine|startswith", ["cmd /c ping", "powershell -e ", "wscript.exe //b", "x$y", "a|b"]),
    "contains.yml": ("CommandLine|contains", ["whoami", "net user", "\\\\tsclient\\", "^caret", "{brace}"]),
    "equals.yml": ("User", ["NT AUTHORITY\\SYSTEM", "svc.exch", "a.b", "Admin1x", "rootish"]),
}
EVENTS = [
    {"Image": "C:\\x\\A.EXE"}, {"Image": "C:\\x\\b (x).exe"}, {"Image": "C:\\x\\c[1].exe"}, {"Image": "C:\\x\\d+e.exe"},
    {"Image": "C:\\x\\É.exe"}, {"Image": "C:\\x\\a.exe.bak"}, {"Image": "C:\\x\\dde.exe"},
    {"CommandLine": "CMD /c ping 1.2.3.4"}, {"CommandLine": "x$y tail"}, {"CommandLine": "a|b"},
    {"CommandLine": "run whoami /all"}, {"CommandLine": "open \\\\tsclient\\c"}, {"CommandLine": "^caret"},
    {"CommandLine": "{brace}"}, {"CommandLine": "ab"}, {"CommandLine": " cmd /c ping"},
    {"User": "nt authority\\system"}, {"User": "svc.exch"}, {"User": "axb"}, {"User": "Admin1"}, {"User": "rootish"},
    {"User": "a.b "}, {"Image": None, "User": None},
]  # fmt: skip


def _write(tmp_path):
    folder = tmp_path / "sigma"
    folder.mkdir()
    for n, (name, (field, values)) in enumerate(RULES.items()):
        listed = "\n".join(f"      - '{v}'" for v in values)
        (folder / name).write_text(
            f"title: {name}\nid: 00000000-0000-4000-8000-00000000000{n}\nstatus: test\n"
            "logsource: {product: windows, category: process_creation}\n"
            f"detection:\n  sel:\n    {field}:\n{listed}\n  condition: sel\nlevel: high\n"
        )
    return folder


def _hits(tmp_path, collection, folder):
    lines = [
        {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "TimeCreated": f"2021-03-03T01:02:{i:02d}Z",
         **{k: v for k, v in e.items() if v is not None}}
        for i, e in enumerate(EVENTS)
    ]  # fmt: skip
    (collection / "events.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = scan(collection, ScanOptions(sigma=[folder], analytics=False))
    return sorted((f.rule.id, e.line) for f in result.findings if f.rule.id.startswith("sigma:") for e in f.evidence)


def test_one_pattern_and_shared_view_give_each_rules_own_hits(tmp_path, collection, monkeypatch):
    folder = _write(tmp_path)
    compact = load_sigma([folder]).rules
    assert all("regexp_matches" in r.sql and r.view is not None for r in compact)
    fast = _hits(tmp_path, collection, folder)
    monkeypatch.setattr(sigma_mod, "COMPACT_OR", 10_000)  # every value its own condition
    monkeypatch.setenv("EXHUNT_CACHE", str(tmp_path / "other-cache"))
    assert not any("regexp_matches" in r.sql for r in load_sigma([folder]).rules)
    monkeypatch.setattr("exhunt.detect._by_view", lambda rules: (rules, []))  # every rule alone
    slow = _hits(tmp_path, collection, folder)
    assert fast == slow
    lines = {rule: sorted(line for r, line in fast if r == rule) for rule, _ in fast}
    assert lines == {
        "sigma:00000000-0000-4000-8000-000000000000": [1, 2, 3, 4, 5],  # case-folded, metacharacters literal
        "sigma:00000000-0000-4000-8000-000000000001": [8, 9, 10],
        "sigma:00000000-0000-4000-8000-000000000002": [11, 12, 13, 14],
        "sigma:00000000-0000-4000-8000-000000000003": [17, 18, 21],
    }


@pytest.mark.parametrize("values", [["a"] * 3, ["*a*", "b", "c?", "d"]])
def test_short_or_wildcard_lists_keep_the_plain_conversion(values):
    from sigma.collection import SigmaCollection

    listed = "\n".join(f"      - '{v}'" for v in values)
    doc = (
        "title: t\nstatus: test\nlogsource: {product: windows, category: process_creation}\n"
        f"detection:\n  sel:\n    Image:\n{listed}\n  condition: sel\n"
    )
    rule = SigmaCollection.from_yaml(doc).rules[0]
    target = sigma_mod.targets_for(rule.logsource)[0]
    text, _ = sigma_mod._backend(target).condition(rule)
    assert "regexp_matches" not in text
