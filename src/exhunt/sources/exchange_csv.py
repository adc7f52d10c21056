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

from exhunt.sources.base import ArtifactInfo, Source, text_head
from exhunt.sources.delimited import EXCHANGE_CSV, RawRows, ReadState, split_rows

# '#Log-type' value -> store table. Unknown types get a table named after their slug.
LOG_TYPE_TABLES = {
    "httpproxy logs": "log_httpproxy",
    "ecp server log": "log_ecp_server",
    "ecp activity context log": "log_ecp_activity",
    "ews logs": "log_ews",
    "rps http logs": "log_rps_http",
    "rps cmdlet logs": "log_rps_cmdlet",
    "rps authz logs": "log_rps_authz",
    "message tracking log": "log_message_tracking",
}
_BARE_HEADER = re.compile(r"^(DateTime|date-time|TimeStamp|Timestamp),[A-Za-z]")


def table_for_log_type(log_type: str | None, path: str) -> str:
    """Pick the store table for an Exchange log, by its #Log-type first and its folder second."""
    lt = (log_type or "").strip().lower()
    if lt in LOG_TYPE_TABLES:
        return LOG_TYPE_TABLES[lt]
    if "oab" in lt or "oabgenerator" in path.lower().replace(" ", ""):
        return "log_oab_generator"
    if lt:
        return "log_" + re.sub(r"[^a-z0-9]+", "_", lt).strip("_")
    low = path.lower()
    for folder, table in (("/httpproxy/", "log_httpproxy"), ("/ecp/server/", "log_ecp_server"), ("/ews/", "log_ews")):
        if folder in low:
            return table
    return "log_exchange_other"


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
        state.errors = info.errors
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
