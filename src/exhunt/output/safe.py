"""Make attacker-controlled text harmless in each output medium."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.markup import escape

# C0/C1 controls (newline and tab included), DEL, and the invisible Unicode format characters that
# move or hide text: soft hyphen, Arabic letter mark, zero-width and bidi marks, line/paragraph
# separators, bidi embeddings, overrides and isolates, word joiners, BOM, interlinear annotations.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
)
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(ch: str) -> str:
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(value: object) -> str:
    """`value` as text with every control and invisible format character shown as an escape
    (`\\n`, `\\t`, `\\x1b`, `\\u202e`): one record can never start a new line or reorder text."""
    return _CONTROL.sub(lambda m: _visible(m.group()), str(value))


def safe_console(**kwargs: Any) -> Console:
    """A rich Console that never turns `:name:` codes into emoji (log text carries colons)."""
    return Console(emoji=False, **kwargs)


def terminal_text(value: object, limit: int = 300) -> str:
    """Printable, markup-escaped text for the terminal: control characters (newlines, tabs, ANSI
    escapes, bidi overrides) become visible `\\n`, `\\t`, `\\xNN`, `\\uNNNN` escapes, long values are
    cut. Print it on a `safe_console()`, which leaves `:emoji:` codes as typed."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + f"… [+{len(text) - limit} chars]"
    return escape(escape_controls(text))


def csv_cell(value: object) -> str:
    """A CSV cell that spreadsheets will not run as a formula (OWASP CSV injection guidance)."""
    text = "" if value is None else str(value)
    if text and text[0] in ("=", "+", "-", "@", "\t", "\r", "|", "%"):
        return "'" + text
    return text
