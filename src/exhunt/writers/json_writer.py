"""The full result as one JSON document (schema in `docs/json-schema.md`)."""

from __future__ import annotations

import json
import re
from typing import Any, TextIO

# JSON escapes C0 controls itself; these pass through `ensure_ascii=False` and would drive a terminal
# (C1 controls such as U+009B CSI) or reorder what an analyst reads (bidi overrides, line separators).
_UNSAFE = re.compile("[\u0080-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def dumps(doc: Any, indent: int | None = 2) -> str:
    """JSON text that is inert on a terminal: every unsafe character written as a \\u escape."""
    text = json.dumps(doc, indent=indent, default=str, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write(doc: dict[str, Any], out: TextIO) -> None:
    out.write(dumps(doc) + "\n")
