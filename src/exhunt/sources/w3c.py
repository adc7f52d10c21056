"""IIS W3C extended logs (`inetpub/logs/LogFiles/W3SVC<n>/u_exYYMMDD.log`).

Space-separated fields named by `#Fields`, which may repeat mid-file with another list; `-` means
empty; spaces inside values are written as `+`; times are UTC. W3SVC1 is the Exchange front end
(ports 443/80), W3SVC2 the back end (port 444). Sample line:
`2021-03-03 04:15:02 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 python-requests/2.25.1 - 200 0 0 31`
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from exhunt.families import family
from exhunt.sources.base import ArtifactInfo, Source, text_head
from exhunt.sources.delimited import W3C, RawRows, ReadState, split_rows

_FIELDS_DATE_TIME = re.compile(r"#\s?Fields:\s*date time")


class W3CSource(Source):
    kind = "iis-w3c"

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        text = text_head(head)
        if text.startswith("#Software: Microsoft Internet Information Services"):
            return True
        return _starts_a_line(_FIELDS_DATE_TIME, text[:4096])  # `# Fields:` too, as excerpts quote it

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, RawRows]]:
        state = ReadState()
        state.errors, state.notes = info.errors, info.notes
        info.table = table = family("iis").table
        info.log_type = "IIS W3C"
        try:
            for rows in split_rows(stream, W3C, state, hasher):
                yield table, rows
        finally:
            info.directives = state.seen_directives


def _starts_a_line(pattern: re.Pattern[str], text: str) -> bool:
    """Whether `pattern` matches at the start of a line of `text` (after a BOM there, if any). Found
    by its leading literal, then checked: a `(?:^|\n)` pattern tried every position (70 us a file)."""
    for m in pattern.finditer(text):
        k = m.start()
        if k > 0 and text[k - 1] == "\ufeff":
            k -= 1
        if k == 0 or text[k - 1] == "\n":
            return True
    return False
