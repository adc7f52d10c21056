"""The full result as one JSON document (schema in `docs/json-schema.md`)."""

from __future__ import annotations

import json
from typing import Any, TextIO


def write(doc: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")
