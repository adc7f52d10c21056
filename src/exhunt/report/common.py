"""Helpers shared by the report writers: times, inert text, walking findings and their evidence."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {name: rank for rank, name in enumerate(reversed(SEVERITIES))}  # info 0 .. critical 4

# C0/C1 controls (ANSI/OSC escapes start with ESC) and bidi overrides/isolates, which reorder what a
# reader sees ("gpj.exe" shown as "exe.jpg"); tab and newline stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def inert(value: object) -> str:
    """Text with control characters and bidi overrides made visible as \\xNN / \\uNNNN escapes."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 time of the result document as an aware UTC datetime (naive means UTC)."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def iso(value: datetime) -> str:
    """ISO-8601 with an explicit +00:00 offset and microseconds."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def micros(value: datetime) -> int:
    """Microseconds since the Unix epoch."""
    return round(value.timestamp() * 1_000_000)


def findings(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's findings (a list of objects, whatever else the document holds)."""
    return [f for f in doc.get("findings") or [] if isinstance(f, dict)]


def evidence_of(doc: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(finding number, finding, evidence) for every evidence sample; numbers are 1-based like the
    `findings.id` / `evidence.finding` columns of the case database."""
    for number, finding in enumerate(findings(doc), 1):
        for item in finding.get("evidence") or []:
            if isinstance(item, dict):
                yield number, finding, item


def joined(values: object) -> str:
    """A list of ids as one comma-separated string."""
    if isinstance(values, list | tuple):
        return ", ".join(str(v) for v in values)
    return "" if values is None else str(values)
