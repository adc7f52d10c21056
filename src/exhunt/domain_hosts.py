"""Which collected computers are domain controllers and which are Exchange servers, as SQL over the
case database's `events` (and `artifacts`, `log_iis`) tables.

Domain controllers are recognised by what only a DC writes into its own Security log: Kerberos ticket
events (4768, 4769, 4771), directory-service access and changes (4662, 5136, 5137, 5141) and
replication auditing (4928-4937), all from the Microsoft-Windows-Security-Auditing provider. A
computer named only in someone else's log (a second DC that was not collected) is *not* known as a
DC; rules that need the distinction say so. Names are compared as upper-case short names (`DC01`
for `dc01.corp.example`), account names without their trailing `$`.

Exchange servers are the computers whose events come from an MSExchange provider, and the hosts of
the collection's Exchange/IIS log files; their addresses are the server addresses IIS logged (s-ip).
"""

from __future__ import annotations

from exhunt.families import FAMILIES, family

DC_ONLY_EVENTS = (4768, 4769, 4771, 4662, 5136, 5137, 5141, 4928, 4929, 4930, 4931, 4932, 4933, 4934, 4935, 4936, 4937)
SECURITY_PROVIDER = "Microsoft-Windows-Security-Auditing"
EXCHANGE_LOG_TABLES = tuple(f.table for f in FAMILIES if f.kind == "log")  # the server's own logs
EVENTS, IIS = family("events").table, family("iis").table


def short_name(expr: str) -> str:
    """SQL: the upper-case short host name of a computer name or FQDN expression."""
    return f"upper(split_part(trim({expr}), '.', 1))"


def account_host(expr: str) -> str:
    """SQL: the upper-case computer name of an account expression ('CORP\\EXCH01$' -> 'EXCH01')."""
    return f"upper(rtrim(regexp_replace(trim({expr}), '^.*\\\\', ''), '$'))"


def dc_names_sql() -> str:
    """SQL selecting one column `name`: the collected computers whose own logs show they are DCs."""
    ids = ", ".join(str(i) for i in DC_ONLY_EVENTS)
    return (
        f"SELECT DISTINCT {short_name('computer')} AS name FROM {EVENTS} "
        f"WHERE event_id IN ({ids}) AND provider = '{SECURITY_PROVIDER}' AND computer IS NOT NULL"
    )


def exchange_names_sql(tables: set[str]) -> str:
    """SQL selecting one column `name`: Exchange servers seen in the collection."""
    parts = [f"SELECT DISTINCT {short_name('computer')} AS name FROM {EVENTS} WHERE provider ILIKE 'MSExchange%'"]
    logs = [t for t in EXCHANGE_LOG_TABLES if t in tables]
    if logs:
        names = ", ".join(f"'{t}'" for t in logs)
        parts.append(f"SELECT DISTINCT upper(host) AS name FROM artifacts WHERE log_table IN ({names})")
    return " UNION ".join(parts)


def exchange_ips_sql(tables: set[str], columns: dict[str, list[str]]) -> str:
    """SQL selecting one column `ip`: the addresses the Exchange server answered on (IIS s-ip)."""
    if IIS in tables and "s-ip" in columns.get(IIS, []):
        return f'SELECT DISTINCT "s-ip" AS ip FROM {IIS} WHERE "s-ip" IS NOT NULL'
    return "SELECT NULL::VARCHAR AS ip WHERE false"


def topology_dc_names_sql() -> str:
    """SQL selecting one column `name`: domain controllers Exchange itself reports using, from the
    MSExchange ADAccess topology event 2080 ("<fqdn> CDG ...") and the topology note of every
    MSExchange Management cmdlet event ("Configuration Domain Controller: 'dc01.corp.example'",
    "Preferred Domain Controllers: '{ dc01.corp.example }'"). Weaker than a DC's own log: used only to
    tell a DC outside the collection from an unknown computer account."""
    text = "coalesce(CAST(data AS VARCHAR), '') || ' ' || coalesce(message, '')"
    labelled = f"regexp_extract_all({text}, '(?:Domain Controllers?|Global Catalog): ''[{{ ]*([A-Za-z0-9-]+)[.A-Za-z0-9-]*', 1)"
    adaccess = f"regexp_extract_all({text}, '([A-Za-z0-9-]+)\\.[A-Za-z0-9.-]+\\s+CDG\\s', 1)"
    return f"""
        SELECT DISTINCT upper(name) AS name FROM (
            SELECT unnest({labelled}) AS name FROM {EVENTS}
            WHERE channel = 'MSExchange Management' AND event_id IN (1, 6)
            UNION ALL
            SELECT unnest({adaccess}) AS name FROM {EVENTS}
            WHERE provider ILIKE 'MSExchange ADAccess' AND event_id = 2080
        )
    """
