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
import json
import os
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from exhunt import __version__
from exhunt.rules.model import FieldView, Rule

_TUPLES = ("cves", "attack", "group_by", "references", "sql_params")


def cache_root() -> Path:
    """The folder the converted rules are kept in."""
    if os.environ.get("EXHUNT_CACHE"):
        return Path(os.environ["EXHUNT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "exhunt"


@cache
def converter_key() -> str:
    """A digest of everything a conversion depends on besides the rule file."""
    here = Path(__file__).parent
    parts = [__version__, metadata.version("pysigma"), metadata.version("duckdb")]
    for source in (here / "sigma.py", here / "model.py", here.parent / "families.py"):
        parts.append(hashlib.sha256(source.read_bytes()).hexdigest())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def file_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(key: str) -> Path:
    return cache_root() / "sigma" / converter_key() / key[:2] / f"{key}.json"


def load(key: str) -> dict[str, Any] | None:
    """The stored outcome of converting the file with this key, or None."""
    try:
        doc = json.loads(_entry(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("key") == key else None


def store(key: str, outcome: dict[str, Any]) -> None:
    """Keep an outcome; written to a temporary file and renamed, so readers never see half of one."""
    path = _entry(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({**outcome, "key": key}, out)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        return  # a cache that cannot be written only costs the next load its time


def rule_to_json(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id, "title": rule.title, "description": rule.description, "severity": rule.severity,
        "kind": rule.kind, "source": rule.source, "confidence": rule.confidence, "cves": list(rule.cves),
        "attack": list(rule.attack), "false_positives": rule.false_positives, "references": list(rule.references),
        "sql": rule.sql, "sql_params": list(rule.sql_params),
        "view": None if rule.view is None else {
            "sources": rule.view.sources, "lowered": list(rule.view.lowered), "plain": list(rule.view.plain),
            "where": rule.view.where,
        },
    }  # fmt: skip


def rule_from_json(doc: dict[str, Any], origin: str) -> Rule:
    values = {k: tuple(v) if k in _TUPLES else v for k, v in doc.items()}
    view = values.pop("view", None)
    if view is not None:
        view = FieldView(view["sources"], tuple(view["lowered"]), tuple(view["plain"]), view["where"])
    return Rule(**values, view=view, origin=origin)
