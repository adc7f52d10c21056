"""Writers: turn a scan result into a file format, registered by name.

Every writer takes the result as its JSON document (the `exhunt.scan` schema, `docs/json-schema.md`)
and a text stream, so the same writer serves a fresh scan (`exhunt scan --out FORMAT=FILE`) and a
saved case (`exhunt report CASE.duckdb --out FORMAT=FILE`). Writers are imported only when used.
A new writer is one module with a `write(doc, out)` function and one line in `WRITERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, TextIO

from exhunt.errors import UsageError

Write = Callable[[dict[str, Any], TextIO], None]


@dataclass(frozen=True)
class WriterSpec:
    name: str
    target: str  # "module:function"
    description: str


WRITERS: dict[str, WriterSpec] = {
    spec.name: spec
    for spec in (
        WriterSpec("json", "exhunt.writers.json_writer:write", "the full result as one JSON document"),
        WriterSpec("terminal", "exhunt.output.terminal:write", "the summary shown on screen, as plain text"),
        WriterSpec("html", "exhunt.report.html:write", "one self-contained HTML report (no network access)"),
        WriterSpec(
            "timesketch", "exhunt.report.timesketch:write", "Timesketch JSONL: one line per finding and evidence"
        ),
        WriterSpec("ecs", "exhunt.report.ecs:write", "Elastic Common Schema NDJSON for Elasticsearch"),
        WriterSpec("stix", "exhunt.report.stix:write", "a STIX 2.1 bundle: indicators, sightings, the report"),
        WriterSpec("csv", "exhunt.report.csv_writer:write", "findings and evidence as spreadsheet-safe CSV"),
    )
}


def writer(name: str) -> Write:
    """The write function registered as `name`; a UsageError names the known ones."""
    spec = WRITERS.get(name)
    if spec is None:
        raise UsageError(f"unknown output format {name!r}; known: {', '.join(sorted(WRITERS))}")
    module, _, function = spec.target.partition(":")
    return getattr(import_module(module), function)  # type: ignore[no-any-return]


def parse_out(value: str) -> tuple[str, str]:
    """`FORMAT=FILE` (FILE `-` for stdout) -> (format, file)."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise UsageError(
            f"--out {value!r}: expected FORMAT=FILE, e.g. json=result.json (formats: {', '.join(sorted(WRITERS))})"
        )
    writer(name)
    return name, path
