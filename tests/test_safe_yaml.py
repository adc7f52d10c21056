"""Every YAML input (rules, IOC packs, Sigma files) goes through one loader with alias, depth and size
limits: a few hundred bytes of "billion laughs" fail fast with one line instead of running for minutes."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from exhunt import safe_yaml
from exhunt.cli import app
from exhunt.errors import RuleError
from exhunt.iocs import load_iocs
from exhunt.rules.model import load_rule_file

LEVELS = "abcdefghi"


def _laughs(indent: str) -> list[str]:
    """Nine anchors, each a list of nine aliases of the one before: 9**9 leaves once expanded."""
    lines = [f"{indent}- &a [l,l,l,l,l,l,l,l,l]"]
    lines += [f"{indent}- &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in itertools.pairwise(LEVELS)]
    return lines


IOC_PACK = "name: x\nindicators:\n- source: s\n  values: [1.2.3.4]\n  label:\n" + "\n".join(_laughs("   ")) + "\n"
RULE = (
    (Path(__file__).resolve().parents[1] / "src/exhunt/rules/builtin/scanner-probe.yaml")
    .read_text(encoding="utf-8")
    .split("false_positives:")[0]
    + "false_positives:\n"
    + "\n".join(_laughs("  "))
    + "\n"
)
SIGMA = (
    "title: t\nlogsource: {product: windows}\ndetection:\n  sel:\n    EventID:\n"
    + "\n".join(_laughs("      "))
    + "\n  condition: sel\n"
)


def _fails_fast(fn, match: str) -> str:
    started = time.perf_counter()
    with pytest.raises(RuleError, match=match) as info:
        fn()
    assert time.perf_counter() - started < 1.0
    message = str(info.value)
    assert "\n" not in message
    return message


def test_billion_laughs_ioc_pack_fails_fast_with_one_line(tmp_path: Path):
    assert len(IOC_PACK.encode()) <= 423
    path = tmp_path / "laughs.yaml"
    path.write_text(IOC_PACK)
    _fails_fast(lambda: load_iocs([path]), "aliases")


def test_billion_laughs_rule_file_fails_fast_with_one_line(tmp_path: Path):
    path = tmp_path / "laughs.yaml"
    path.write_text(RULE)
    _fails_fast(lambda: load_rule_file(path), "aliases")


def test_billion_laughs_cli_ioc_is_one_line_exit_2(tmp_path: Path):
    (tmp_path / "c").mkdir()
    path = tmp_path / "laughs.yaml"
    path.write_text(IOC_PACK)
    started = time.perf_counter()
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "c"), "--ioc", str(path), "-q"])
    assert time.perf_counter() - started < 10
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1 and "aliases" in res.output


def test_billion_laughs_sigma_file_is_refused(tmp_path: Path):
    from exhunt.rules.sigma_load import check_sigma

    path = tmp_path / "laughs.yml"
    path.write_text(SIGMA)
    started = time.perf_counter()
    try:
        load = check_sigma([path])
    except RuleError as exc:
        assert "aliases" in str(exc)
    else:
        assert not load.rules and "aliases" in load.skipped[0][2]
    assert time.perf_counter() - started < 2.0


def test_depth_and_size_limits():
    with pytest.raises(safe_yaml.YamlRefused, match="nested deeper"):
        safe_yaml.load("[" * 200 + "]" * 200)
    assert safe_yaml.load("[" * 10 + "]" * 10) == [[[[[[[[[[]]]]]]]]]]
    with pytest.raises(safe_yaml.YamlRefused, match="larger than"):
        safe_yaml.load("a: b\n" * 10, max_bytes=20)
    with pytest.raises(yaml.YAMLError):
        safe_yaml.load("a: &x 1\nb: *x\n")
    assert safe_yaml.load("a: &x 1\n") == {"a": 1}  # an anchor without an alias is harmless


def test_rule_files_still_refuse_duplicate_keys(tmp_path: Path):
    path = tmp_path / "dup.yaml"
    path.write_text(RULE.split("false_positives:")[0] + "title: again\n")
    with pytest.raises(RuleError, match="duplicate key 'title'"):
        load_rule_file(path)
