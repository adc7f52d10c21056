"""Loading community Sigma rules: every `*.yml`/`*.yaml` under the given files and folders.

Each file is converted once (`exhunt.rules.sigma`, with pySigma) and the outcome kept in the user's
cache under a digest of the file and of the converter (`sigma_cache`); a warm load reads those
entries and never imports pySigma (its import was a quarter of loading SigmaHQ's 2,400 Windows
rules from the cache). `load_sigma(paths)` returns the rules together with every rule it could not
use and why (`SigmaLoad.skipped`): nothing is dropped silently. `check_sigma(paths)` is the same
load, for `exhunt rules check-sigma`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exhunt import safe_yaml
from exhunt.errors import RuleError
from exhunt.rules import sigma_cache
from exhunt.rules.model import Rule

__all__ = ["Malformed", "SigmaLoad", "check_sigma", "first_title", "load_sigma", "read_docs", "yaml_files"]


@dataclass
class SigmaLoad:
    """The rules that converted, and every rule that did not: (path, title, reason)."""

    rules: list[Rule] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


class Malformed(Exception):
    """The file is not a readable Sigma file; the message is the one-line problem."""


def yaml_files(path: Path) -> list[Path]:
    """The YAML files of a folder (not under hidden folders), or the file itself."""
    if not path.is_dir():
        return [path]
    found = []
    for folder, dirs, names in os.walk(path):  # os.walk: a third of rglob's time for SigmaHQ's 2,400 files
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, n) for n in names if os.path.splitext(n)[1].lower() in (".yml", ".yaml")]
    return sorted(p for p in found if p.is_file())


def read_docs(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a Sigma file; Malformed, with the one-line reason, for anything else."""
    try:
        text = safe_yaml.read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise Malformed(f"cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise Malformed(f"invalid YAML: {safe_yaml.describe(exc)}") from None
    try:
        docs = [d for d in safe_yaml.load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise Malformed(f"invalid YAML: {problem}{where}") from None
    if not docs:
        raise Malformed("no Sigma rule in the file")
    if not all(isinstance(d, dict) for d in docs):
        raise Malformed("not a Sigma rule: each YAML document must be a mapping")
    if not any(k in d for d in docs for k in ("detection", "correlation", "filter", "logsource", "action")):
        raise Malformed("not a Sigma rule: no detection, logsource or correlation section")
    return docs


def first_title(docs: list[dict[str, Any]] | None) -> str:
    """The first title the documents give, else ""."""
    return str(next((d.get("title") for d in docs or [] if d.get("title")), ""))


def _load_file(path: Path, out: SigmaLoad, seen: dict[str, str]) -> None:
    """Convert one file (or take its earlier conversion from the cache) into `out`; raise
    Malformed for a file that is not Sigma."""
    key = _cache_key(path)
    cached = sigma_cache.load(key) if key else None
    items = _cached_items(cached, path) if cached is not None else None
    if items is None:  # not cached, or an entry that does not read back: convert again
        from exhunt.rules.sigma import convert_file  # pySigma: imported only when a file is converted

        outcome = convert_file(path)
        if key:
            sigma_cache.store(key, outcome)
        if outcome.get("malformed"):
            raise Malformed(outcome["malformed"])
        items = [_item(x, path) for x in outcome["items"]]
    for title, skip, converted in items:
        if skip is not None:
            out.skipped.append((str(path), title, skip))
            continue
        if converted[0].id in seen:
            dup = converted[0].id
            out.skipped.append((str(path), title, f"duplicate rule id {dup!r} (also in {seen[dup]})"))
            continue
        seen[converted[0].id] = str(path)
        out.rules.extend(converted)


def _item(doc: dict[str, Any], path: Path) -> tuple[str, str | None, list[Rule]]:
    """(title, reason it was skipped, rules) of one converted Sigma rule."""
    if "skip" in doc:
        return str(doc["title"]), str(doc["skip"]), []
    return str(doc["title"]), None, [sigma_cache.rule_from_json(r, str(path)) for r in doc["rules"]]


def _cached_items(cached: dict[str, Any], path: Path) -> list[tuple[str, str | None, list[Rule]]] | None:
    """A cache entry's items, or None when it does not read back as one (never trust it further)."""
    if cached.get("malformed"):
        raise Malformed(str(cached["malformed"]))
    try:
        items = [_item(x, path) for x in cached["items"]]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return items if all(skip is not None or rules for _, skip, rules in items) else None


def _cache_key(path: Path) -> str | None:
    """What a conversion of this file depends on: its bytes, its name (a rule without an id is named
    after it) and whether it sits in a `deprecated` folder. None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(safe_yaml.MAX_BYTES + 1)
    except OSError:
        return None
    deprecated = "deprecated" in (p.lower() for p in path.parts[:-1])
    return sigma_cache.file_key(f"{path.stem}\0{deprecated}\0".encode() + data)


def load_sigma(paths: Iterable[Path]) -> SigmaLoad:
    """Convert the Sigma rules in `paths` (files or folders); how a rule converts is told in
    `exhunt.rules.sigma`'s docstring."""
    out = SigmaLoad()
    seen: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pySigma's deprecation chatter: the CLI prints nothing it did not ask for
        for given in paths:
            given = Path(given)
            if not given.exists():
                raise RuleError(str(given), "no such file or folder")
            for path in yaml_files(given):
                try:
                    _load_file(path, out, seen)
                except Malformed as exc:
                    if path == given:  # the user named this file: tell them now
                        raise RuleError(str(path), str(exc)) from None
                    out.skipped.append((str(path), _safe_title(path), str(exc)))
    return out


def _safe_title(path: Path) -> str:
    try:
        return first_title([d for d in safe_yaml.load_all(safe_yaml.read_text(path)) if isinstance(d, dict)])
    except (OSError, UnicodeDecodeError, yaml.YAMLError):  # already known to be malformed; the title is a nicety
        return ""


def check_sigma(paths: Iterable[Path]) -> SigmaLoad:
    """The same load as `load_sigma`, for `exhunt rules check-sigma`: loaded rules and skipped files."""
    return load_sigma(paths)
