"""One YAML loader for every YAML input (rules, IOC packs, Sigma files), with limits.

PyYAML's SafeLoader builds no objects, but it still follows aliases: a few hundred bytes of nested
`&a [*b, *b, ...]` anchors (the "billion laughs") turn into a structure with billions of leaves that
any code walking it never finishes. Here aliases are refused outright (exhunt's own formats never
need them), nesting is capped at `MAX_DEPTH` and a document at `MAX_BYTES`. Every refusal is a
`YamlRefused`, a `yaml.YAMLError`, so callers' existing handlers turn it into their one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent

MAX_BYTES = 16 << 20
MAX_DEPTH = 64


class YamlRefused(yaml.YAMLError):
    """The document breaks one of the limits; `problem` and `problem_mark` like PyYAML's errors."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class SafeLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with a nesting limit."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise YamlRefused("YAML aliases (*name) are not accepted", event.start_mark)
        nested = isinstance(event, CollectionStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise YamlRefused(f"YAML nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


def _check_size(text: str | bytes, max_bytes: int) -> None:
    if len(text) > max_bytes:
        raise YamlRefused(f"YAML document larger than {max_bytes >> 20} MiB")


def load(text: str | bytes, loader: type[SafeLoader] = SafeLoader, max_bytes: int = MAX_BYTES) -> Any:
    """The one document in `text`; raises YamlRefused (a yaml.YAMLError) past a limit."""
    _check_size(text, max_bytes)
    return yaml.load(text, Loader=loader)


def load_all(text: str | bytes, loader: type[SafeLoader] = SafeLoader, max_bytes: int = MAX_BYTES) -> list[Any]:
    """Every document in `text` (a Sigma file may hold several)."""
    _check_size(text, max_bytes)
    return list(yaml.load_all(text, Loader=loader))


def read_text(path: Path, max_bytes: int = MAX_BYTES) -> str:
    """A YAML file's text, refusing files over the limit before reading them whole."""
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    _check_size(data, max_bytes)
    return data.decode("utf-8")


def describe(exc: yaml.YAMLError) -> str:
    """`problem at line L, column C`, one line, for any YAML error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    text = str(exc).strip()
    problem = getattr(exc, "problem", None) or (text.splitlines()[0] if text else type(exc).__name__)
    return f"{problem}{where}"
