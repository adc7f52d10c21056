"""A cache of converted Sigma files: convert a rule file once, load it in milliseconds after.

Converting SigmaHQ's 2,400 Windows rules through pySigma costs about 30 CPU seconds; the result
depends only on the file's bytes and on exhunt's converter, so it is kept per file under a key of
both: a changed rule file, another exhunt version or another pySigma or DuckDB gives another key,
and a stale entry is never read. Entries are JSON (never pickle) in the user's cache folder
(`$EXHUNT_CACHE`, else `$XDG_CACHE_HOME/exhunt`, else `~/.cache/exhunt`); a folder that cannot be
written, or an entry that cannot be read, only means converting again. Nothing is written near the
rules or the evidence.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from exhunt import __version__
from exhunt.rules.model import FieldView, Rule
from exhunt.user_cache import cache_root, code_digest, read_entry, write_entry

_TUPLES = ("cves", "attack", "group_by", "references", "sql_params")


@cache
def converter_key() -> str:
    """A digest of everything a conversion depends on besides the rule file."""
    here = Path(__file__).parent
    versions = (__version__, metadata.version("pysigma"), metadata.version("duckdb"))
    return code_digest(
        here / "sigma.py",
        here / "sigma_load.py",
        here / "sigma_needs.py",
        here / "sigma_cache.py",
        here / "model.py",
        here.parent / "families.py",
        extra=versions,
    )


def file_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(key: str) -> Path:
    return Path(f"{cache_root()}/sigma/{converter_key()}/{key[:2]}/{key}.json")  # one Path, not four joins


def load(key: str) -> dict[str, Any] | None:
    """The stored outcome of converting the file with this key, or None."""
    return read_entry(_entry(key), key)


def store(key: str, outcome: dict[str, Any]) -> None:
    """Keep an outcome."""
    write_entry(_entry(key), key, outcome)


def rule_to_json(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id, "title": rule.title, "description": rule.description, "severity": rule.severity,
        "kind": rule.kind, "source": rule.source, "confidence": rule.confidence, "cves": list(rule.cves),
        "attack": list(rule.attack), "false_positives": rule.false_positives, "references": list(rule.references),
        "sql": rule.sql, "sql_params": list(rule.sql_params),
        "by_family": [[name, sql, list(params)] for name, sql, params in rule.by_family],
        "view": None if rule.view is None else {
            "sources": rule.view.sources, "lowered": list(rule.view.lowered), "plain": list(rule.view.plain),
            "where": rule.view.where, "needs": None if rule.view.needs is None else [list(n) for n in rule.view.needs],
        },
    }  # fmt: skip


def rule_from_json(doc: dict[str, Any], origin: str) -> Rule:
    values = {k: tuple(v) if k in _TUPLES else v for k, v in doc.items()}
    view = values.pop("view", None)
    values["by_family"] = tuple((str(n), str(sql), tuple(p)) for n, sql, p in values.pop("by_family", ()))
    if view is not None:
        needs = view.get("needs")
        view = FieldView(
            view["sources"], tuple(view["lowered"]), tuple(view["plain"]), view["where"],
            None if needs is None else tuple((str(f), str(lit)) for f, lit in needs),
        )  # fmt: skip
    return Rule(**values, view=view, origin=origin)
