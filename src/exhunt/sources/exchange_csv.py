"""Exchange "LogSchema" CSV logs: HttpProxy (every protocol), ECP Server/Activity, OAB generator, EWS,
Rps_Http/Rps_Cmdlet and any other file with a `#Log-type` directive.

Layout: an optional bare CSV header row, then `#Software`, `#Version` (zero-padded build),
`#Log-type`, `#Date`, `#Fields`, then CSV rows with standard quoting. Columns differ between CUs, so
they are always bound from the file's own `#Fields`. The store table is chosen from `#Log-type`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from exhunt.families import for_log_type
from exhunt.sources.base import ArtifactInfo, Source, text_head
from exhunt.sources.delimited import EXCHANGE_CSV, RawRows, ReadState, split_rows

_BARE_HEADER = re.compile(r"^(DateTime|date-time|TimeStamp|Timestamp),[A-Za-z]")


def table_for_log_type(log_type: str | None, path: str) -> str:
    """The case table of an Exchange log: its family's, by `#Log-type` first and folder second."""
    return for_log_type(log_type, path).table


class ExchangeCsvSource(Source):
    kind = "exchange-csv"

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        text = text_head(head)
        if text.startswith("#Software: Microsoft Exchange") or "\n#Log-type:" in text or text.startswith("#Log-type:"):
            return True
        return bool(_BARE_HEADER.match(text)) and "#Fields:" in text

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, RawRows]]:
        state = ReadState()
        state.errors, state.notes = info.errors, info.notes
        try:
            for rows in split_rows(stream, EXCHANGE_CSV, state, hasher):
                log_type = rows.directives.get("Log-type")
                table = table_for_log_type(log_type, info.path)
                if info.table is None:
                    info.table, info.log_type = table, log_type
                    info.version = rows.directives.get("Version")
                yield table, rows
        finally:
            info.directives = state.seen_directives
            if info.table is None:
                lt = state.directives.get("Log-type")
                info.table, info.log_type = table_for_log_type(lt, info.path), lt
                info.version = state.directives.get("Version")
