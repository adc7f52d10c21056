"""Small helpers for SQL over case tables whose columns depend on the logs that were read."""

from __future__ import annotations

from exhunt.case import CaseReader, quote
from exhunt.families import Family, family

# The families that record mailbox access, by the names the analytics use for them.
EWS, HTTPPROXY, IIS = family("ews"), family("httpproxy"), family("iis")
TRACKING, RPS_CMDLET, EVENTS = family("message_tracking"), family("rps_cmdlet"), family("events")


class Table:
    """A family's case table and its columns, looked up case-insensitively; absent columns read as NULL."""

    def __init__(self, case: CaseReader, fam: Family) -> None:
        self.family = fam
        self.name = quote(fam.table)  # for SQL: `FROM {t.name} t`
        self.columns = case.column_map(fam.table)

    @property
    def exists(self) -> bool:
        return bool(self.columns)

    def has(self, *names: str) -> bool:
        return all(n.lower() in self.columns for n in names)

    def has_any(self, *names: str) -> bool:
        return any(n.lower() in self.columns for n in names)

    def col(self, name: str, alias: str = "t") -> str:
        """`alias."Name"` as VARCHAR, or a NULL of that type when the column is absent."""
        real = self.columns.get(name.lower())
        if real is None:
            return "CAST(NULL AS VARCHAR)"
        return f"{alias}.{quote(real)}"

    def nonempty(self, name: str, alias: str = "t") -> str:
        """The column; the store already reads empty fields as NULL."""
        return self.col(name, alias)
