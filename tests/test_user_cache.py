"""Documents parsed once per content in the user's cache: a warm load gives the cold load's document,
and whatever cannot be kept faithfully, or is damaged, is parsed again."""

from __future__ import annotations

import datetime
from pathlib import Path

from exhunt import safe_yaml
from exhunt.iocs import builtin_iocs
from exhunt.user_cache import _code_key, parsed_once

K1 = (Path(safe_yaml.__file__),)
K2 = (Path(safe_yaml.__file__), Path(__file__))  # another parser's code


def test_parsed_once_keeps_and_returns_the_same_document(tmp_path, monkeypatch):
    monkeypatch.setenv("EXHUNT_CACHE", str(tmp_path))
    calls = []

    def parse(text: str):
        calls.append(text)
        return safe_yaml.load(text)

    text = "a: [1, 2]\nb: {c: x}\n"
    assert parsed_once(text, "docs", parse, K1) == {"a": [1, 2], "b": {"c": "x"}}
    assert parsed_once(text, "docs", parse, K1) == {"a": [1, 2], "b": {"c": "x"}}
    assert len(calls) == 1
    parsed_once(text, "docs", parse, K2)  # another parser's code: its own entry
    assert len(calls) == 2
    entry = next((tmp_path / "docs" / _code_key(K1)).rglob("*.json"))
    entry.write_text("{not json")
    assert parsed_once(text, "docs", parse, K1) == {"a": [1, 2], "b": {"c": "x"}}
    assert len(calls) == 3


def test_a_document_json_cannot_give_back_is_parsed_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("EXHUNT_CACHE", str(tmp_path))
    calls = []
    for _ in range(2):
        doc = parsed_once("when: 2021-03-02\n1: one\n", "docs", lambda t: calls.append(t) or safe_yaml.load(t), K1)
        assert doc == {"when": datetime.date(2021, 3, 2), 1: "one"}
    assert len(calls) == 2 and not list(tmp_path.rglob("*.json"))


def test_the_builtin_ioc_pack_loads_the_same_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXHUNT_CACHE", str(tmp_path))
    cold = builtin_iocs()
    assert list((tmp_path / "feed-files").rglob("*.json"))
    assert builtin_iocs() == cold
