"""Fetch the raw physical lines behind evidence records, read-only and bounded.

Only lines that back a reported finding are read again, grouped by file so each file is streamed once
and only up to its last wanted line. Long lines are cut to `MAX_RAW_CHARS` with a marker.
"""

from __future__ import annotations

from exhunt.collection import Collection

MAX_RAW_CHARS = 16_384


def fetch_lines(collection: Collection, wanted: dict[str, set[int]]) -> dict[tuple[str, int], str]:
    """{(path, line): text} for every wanted line that exists; unreadable files are skipped."""
    out: dict[tuple[str, int], str] = {}
    for path, lines in wanted.items():
        if not lines:
            continue
        last = max(lines)
        try:
            with collection.open(path) as stream:
                for number, raw in enumerate(stream, 1):
                    if number in lines:
                        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                            raw = raw[3:]
                        text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                        if len(text) > MAX_RAW_CHARS:
                            text = text[:MAX_RAW_CHARS] + f"... [cut: {len(text)} characters]"
                        out[(path, number)] = text
                    if number >= last:
                        break
        except (OSError, KeyError, ValueError):
            continue
    return out
