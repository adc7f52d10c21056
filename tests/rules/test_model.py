"""Rules load strictly: every mistake names the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from exhunt.errors import RuleError
from exhunt.rules.model import SOURCES, load_rule_file, load_rules

GOOD = """id: t-1
title: T
description: d
severity: high
kind: exploitation
source: httpproxy
where: {field: AnchorMailbox, like: "ServerInfo~*/*"}
"""


def test_builtin_rules_load_and_are_complete():
    rules = load_rules()
    assert len(rules) >= 15
    for r in rules:
        assert r.title and r.description and r.source in SOURCES
        assert r.attack, f"{r.id} has no ATT&CK technique"
        assert r.references, f"{r.id} has no reference"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (GOOD + "colour: red\n", "unknown key(s): colour"),
        (GOOD.replace("severity: high", "severity: huge"), "severity must be one of"),
        (GOOD.replace("kind: exploitation\n", ""), "missing key(s): kind"),
        (GOOD + "title: again\n", "duplicate key 'title'"),
        (GOOD.replace('like: "ServerInfo~*/*"', "matches: x"), "unknown operator(s) ['matches']"),
        (GOOD.replace('where: {field: AnchorMailbox, like: "ServerInfo~*/*"}', "where: {all: []}"), "non-empty list"),
        ("id: [unclosed\n", "invalid YAML"),
        ("- just a list\n", "one mapping"),
    ],
)
def test_bad_rule_files_name_the_file_and_problem(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RuleError) as exc:
        load_rule_file(path)
    assert str(path) in str(exc.value)
    assert problem in str(exc.value)


def test_duplicate_rule_ids_are_refused(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(RuleError, match="duplicate rule id 't-1'"):
        load_rules([tmp_path])


WEB = """id: w-1
title: T
description: d
severity: high
kind: exploitation
source: web
group_by: [client_ip]
where: {all: [{field: url_stem, startswith: /ecp/}, {field: bytes, gte: 1000}]}
"""


def test_web_rules_take_only_the_normalised_fields(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text(WEB)
    assert load_rule_file(good).source == "web"
    for wrong in (WEB.replace("field: url_stem", "field: cs-uri-stem"), WEB.replace("[client_ip]", "[c-ip]")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(wrong)
        with pytest.raises(RuleError, match="only the normalised web fields"):
            load_rule_file(bad)


def test_web_rules_keep_the_columns_each_family_reads_for_them(tmp_path: Path):
    from exhunt.families import WEB_FIELDS, family
    from exhunt.rules.columns import columns_to_keep

    (tmp_path / "w.yaml").write_text(WEB)
    keep = columns_to_keep(load_rules([tmp_path / "w.yaml"]))
    assert {"urlstem", "responsebytes", "clientipaddress", "requestid"} <= keep[family("httpproxy").table]
    assert family("iis").table not in keep  # IIS tables are never projected
    assert all(set(family(name).web_fields) == set(WEB_FIELDS) for name in ("iis", "httpproxy"))


def test_python_rules_say_what_they_read_so_the_default_scan_stays_projected():
    """A python rule without `reads` keeps every column of its family: HttpProxy's 60-odd columns were
    all stored on every scan for one such rule, 22% of a 1 GB scan's wall time."""
    from exhunt.families import FAMILIES
    from exhunt.rules.columns import columns_to_keep

    builtin = load_rules()
    projected = {f.name for f in FAMILIES if f.projected}
    assert all(r.reads for r in builtin if r.python and r.source in projected)
    keep = columns_to_keep(builtin)
    assert all(keep[f.table] is not None for f in FAMILIES if f.projected)
    assert {"urlstem", "httpstatus"} <= keep[next(f.table for f in FAMILIES if f.name == "httpproxy")]


def test_reads_belongs_to_python_rules_only(tmp_path: Path):
    (tmp_path / "r.yaml").write_text(WEB + "reads: [url_stem]\n")
    with pytest.raises(RuleError, match="'reads' names what python logic reads"):
        load_rule_file(tmp_path / "r.yaml")
