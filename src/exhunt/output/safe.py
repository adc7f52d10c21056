"""Make attacker-controlled text harmless in each output medium."""

from __future__ import annotations

import re

from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_text(value: object, limit: int = 300) -> str:
    """Printable, markup-escaped text for the terminal: control characters (ANSI escapes, bidi
    overrides) become visible \\xNN / \\uNNNN escapes, long values are cut."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + f"… [+{len(text) - limit} chars]"
    text = _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )
    return escape(text)


def csv_cell(value: object) -> str:
    """A CSV cell that spreadsheets will not run as a formula (OWASP CSV injection guidance)."""
    text = "" if value is None else str(value)
    if text and text[0] in ("=", "+", "-", "@", "\t", "\r", "|", "%"):
        return "'" + text
    return text
