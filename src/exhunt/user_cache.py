"""The user's cache folder: results that depend only on some input's bytes and exhunt's code, kept
under a digest of both, so a stale entry is never read.

Entries are JSON (never pickle) under `$EXHUNT_CACHE`, else `$XDG_CACHE_HOME/exhunt`, else
`~/.cache/exhunt`. A folder that cannot be written, or an entry that cannot be read, only means
doing the work again. Nothing is written near the rules or the evidence.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """The folder the cached results are kept in."""
    env = os.environ  # every variable Path.home() reads is part of the key (HOME; USERPROFILE on Windows)
    return _root(env.get("EXHUNT_CACHE"), env.get("XDG_CACHE_HOME"), env.get("HOME"), env.get("USERPROFILE"))


@functools.lru_cache(maxsize=8)  # asked once per cached Sigma file: Path.home() cost 2,400 rules 0.15 s
def _root(exhunt_cache: str | None, xdg_cache_home: str | None, *home: str | None) -> Path:
    if exhunt_cache:
        return Path(exhunt_cache)
    base = xdg_cache_home or str(Path.home() / ".cache")
    return Path(base) / "exhunt"


def code_digest(*files: Path, extra: tuple[str, ...] = ()) -> str:
    """A digest of the code (and versions) a cached result depends on."""
    parts = [*extra, *(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def read_entry(path: Path, key: str) -> dict[str, Any] | None:
    """The entry stored at `path` under `key`, or None (missing, unreadable or another key's)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("key") == key else None


def write_entry(path: Path, key: str, doc: dict[str, Any]) -> None:
    """Keep `doc` under `key`; written to a temporary file and renamed, so readers never see half of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({**doc, "key": key}, out)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        return  # a cache that cannot be written only costs the next load its time


def parsed_once(text: str, folder: str, parse: Callable[[str], Any], code: tuple[Path, ...]) -> Any:
    """`parse(text)`, kept in `folder` under a digest of the text and of the parser's `code` files (and
    exhunt's version), so the same text is parsed once; kept only when JSON gives back the very document."""
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    entry = cache_root() / folder / _code_key(code) / key[:2] / f"{key}.json"
    cached = read_entry(entry, key)
    if cached is not None:
        return cached["doc"]
    doc = parse(text)
    with contextlib.suppress(TypeError, ValueError, RecursionError):
        if json.loads(json.dumps(doc)) == doc:
            write_entry(entry, key, {"doc": doc})
    return doc


@functools.cache
def _code_key(code: tuple[Path, ...]) -> str:
    from exhunt import __version__

    return code_digest(*code, extra=(__version__,))
