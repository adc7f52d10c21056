"""Robust baselines of mailbox reading: per mailbox by hour, per reader and mailbox by day.

Everything is relative to the collection's own window (the hours and days its access logs span,
stated in the result): a mailbox's hourly volume is judged against the median and the MAD (median
absolute deviation, scaled by 1.4826 to be comparable with a standard deviation) of its own hours,
never against a fixed count. A reader is *steady* on a mailbox when it reads it on most days of the
window at a similar daily volume: that is how journaling, backup, archiving and eDiscovery accounts
and a delegate's daily reading are recognised, whatever they are called.
"""

from __future__ import annotations

from dataclasses import dataclass

from exhunt.case import CaseReader


@dataclass(frozen=True)
class Baseline:
    volume_mads: float = 10.0  # an hour is abnormal above median + 10 * 1.4826 * MAD ...
    volume_ratio: float = 10.0  # ... and above 10 x the median
    min_hours: int = 6  # fewer active hours of a mailbox: too little to judge its volume
    steady_share: float = 0.6  # a steady reader reads on at least 60% of the window's days (and 2)
    steady_spread: float = 0.5  # ... with a daily volume whose MAD is at most half its median


def build(case: CaseReader, b: Baseline) -> dict[str, object]:
    """Create `_mx_pair` (steadiness per reader and mailbox), `_mx_mbase` (hourly volume per mailbox)
    and `_mx_speak` (each session's busiest hour) from `_mx_agg`; return the window."""
    ((start, end, days, hours),) = case.fetch(
        "SELECT min(hour), max(hour), count(DISTINCT CAST(hour AS DATE)), count(DISTINCT hour) FROM _mx_agg"
    )
    case.define(f"""
    CREATE OR REPLACE TEMP TABLE _mx_pair AS
    WITH d AS (SELECT host, mailbox, accessor, CAST(hour AS DATE) AS day,
                      CASE WHEN sum(sized) > 0 THEN sum(coalesce(bytes, 0)) ELSE sum(n) END AS vol
               FROM _mx_agg WHERE path0 = '' GROUP BY host, mailbox, accessor, day),
         m AS (SELECT host, mailbox, accessor, count(*) AS days, median(vol) AS med
               FROM d GROUP BY host, mailbox, accessor)
    SELECT m.host, m.mailbox, m.accessor, m.days, m.med, median(abs(d.vol - m.med)) AS mad,
           {days} >= 2 AND m.days >= greatest(2, ceil({b.steady_share} * {days}))
             AND median(abs(d.vol - m.med)) <= {b.steady_spread} * m.med AS steady
    FROM m JOIN d USING (host, mailbox, accessor) GROUP BY m.host, m.mailbox, m.accessor, m.days, m.med""")
    case.define("""
    CREATE OR REPLACE TEMP TABLE _mx_mbase AS
    WITH h AS (SELECT host, mailbox, hour, sum(coalesce(bytes, 0)) AS vol FROM _mx_agg WHERE path0 = ''
               GROUP BY host, mailbox, hour),
         m AS (SELECT host, mailbox, median(vol) AS med, count(*) AS hours FROM h GROUP BY host, mailbox)
    SELECT m.host, m.mailbox, m.med, m.hours, median(abs(h.vol - m.med)) AS mad
    FROM m JOIN h USING (host, mailbox) GROUP BY m.host, m.mailbox, m.med, m.hours""")
    case.define("""
    CREATE OR REPLACE TEMP TABLE _mx_speak AS
    SELECT host, mailbox, accessor, client_ip, ua, path0, max(vol) AS peak FROM (
      SELECT host, mailbox, accessor, client_ip, ua, path0, hour, sum(coalesce(bytes, 0)) AS vol
      FROM _mx_agg GROUP BY ALL)
    GROUP BY host, mailbox, accessor, client_ip, ua, path0""")
    return {
        "from": start.isoformat() + "Z" if start else None,
        "to": end.isoformat() + "Z" if end else None,
        "days": days,
        "hours": hours,
        "volume_rule": f"an hour above median + {b.volume_mads:g} x 1.4826 x MAD and above {b.volume_ratio:g} x median "
        f"of the mailbox's own active hours in the window (at least {b.min_hours} hours)",
        "steady_rule": f"reads the mailbox on at least {b.steady_share:.0%} of the window's days (and at least 2), "
        f"daily volume MAD at most {b.steady_spread:g} x its median",
    }


def anomalous_sql(b: Baseline) -> str:
    """SQL condition on `s` (session), `k` (its peak) and `mb` (its mailbox's baseline)."""
    return (
        f"(mb.hours >= {b.min_hours} AND k.peak > mb.med + {b.volume_mads} * 1.4826 * mb.mad "
        f"AND k.peak > {b.volume_ratio} * mb.med)"
    )
