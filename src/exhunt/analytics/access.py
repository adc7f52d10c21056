"""Mailbox-access sessions and their verdicts: who read which mailbox, how, when and how much.

A session is one accessor (account, client address, user agent) on one mailbox by one path, over the
whole window. Paths: `ssrf-ews` (EWS reached through the ProxyLogon SSRF, as the computer account),
`stolen-credentials` (valid credentials reading outside their baseline), `export-cmdlet` (export and
search cmdlets), `export-file-download` (an exported file fetched from a web folder), `forwarding`
(mailbox forwarding or inbox rules to an outside address, with the mail that followed),
`delegate/permission` (another account reading the mailbox, with the grant when it is logged).
Verdicts: `taken`, `abnormal`, `granted` (a grant nobody was seen using) and `routine`; routine own
reading is not listed, routine readers of other mailboxes are summarised under `readers`.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from exhunt.analytics import baseline as bl
from exhunt.analytics.mailbox import LINE_SPAN, create_views
from exhunt.analytics.sqlutil import EVENTS, EWS, HTTPPROXY, IIS, RPS_CMDLET, TRACKING, Table
from exhunt.case import CaseReader
from exhunt.families import family_of_table

LISTED = ("taken", "abnormal", "granted")
# the evidence label of each family that records mailbox access
SOURCE_OF_FAMILY = {EWS.name: "ews", HTTPPROXY.name: "httpproxy", IIS.name: "iis", TRACKING.name: "tracking",
                    EVENTS.name: "cmdlet", RPS_CMDLET.name: "cmdlet"}  # fmt: skip
KEY = ("host", "mailbox", "accessor", "client_ip", "ua", "path0")


def _ip_list(ips: set[str]) -> str:
    return "[" + ", ".join("'" + i.replace("'", "''") + "'" for i in sorted(ips)) + "]::VARCHAR[]"


def mailbox_access(
    case: CaseReader,
    attacker_ips: set[str] | None = None,
    *,
    samples: int = 20,
    thresholds: bl.Baseline | None = None,
) -> dict[str, Any]:
    """The mailbox-access model of an open case: {sessions, readers, baseline, coverage}."""
    b = thresholds or bl.Baseline()
    present = create_views(case)
    if not present:  # no log that records mailbox access: nothing to query, say so
        window = {"from": None, "to": None, "days": 0, "hours": 0}
        return {"sessions": [], "readers": [], "baseline": window, "coverage": coverage(case, present, window)}
    ips = _ip_list(attacker_ips or set())
    case.define(f"""
    CREATE OR REPLACE TEMP TABLE _mx_agg AS
    SELECT host, mailbox, max(mailbox_addr) AS addr, accessor, client_ip, ua, path0, op, hour, sum(n) AS n,
           sum(items) AS items, sum(bytes) AS bytes, sum(sized) AS sized, min(t0) AS t0, max(t1) AS t1,
           list_sort(flatten(list(ev) FILTER (WHERE path0 <> '' OR mailbox IS DISTINCT FROM _mx_key(accessor)
                                              OR list_contains({ips}, client_ip))))[1:{int(samples)}] AS ev
    FROM (SELECT coalesce(a.host, '') AS host, _mx_key(r.mailbox_addr) AS mailbox, r.mailbox_addr,
                 coalesce(r.accessor, '') AS accessor, coalesce(r.client_ip, '') AS client_ip,
                 coalesce(r.ua, '') AS ua, coalesce(r.path0, '') AS path0, r.op, r.hour, r.n, r.items, r.bytes,
                 r.sized, r.t0, r.t1, r.ev
          FROM _mx_rows r LEFT JOIN artifacts a ON a.id = r.art)
    GROUP BY host, mailbox, accessor, client_ip, ua, path0, op, hour""")
    case.define("DELETE FROM _mx_agg WHERE mailbox IS NULL OR mailbox = '' OR hour IS NULL")
    window = bl.build(case, b)
    case.define(f"""
    CREATE OR REPLACE TEMP TABLE _mx_sess AS
    WITH names AS (SELECT host, mailbox, max(addr) FILTER (WHERE addr LIKE '%@%') AS full FROM _mx_agg
                   GROUP BY host, mailbox),
    s0 AS (
      SELECT host, mailbox, max(addr) AS addr, accessor, client_ip, ua, path0, sum(n) AS n, sum(items) AS items,
             sum(bytes) AS bytes, sum(sized) AS sized, min(t0) AS first, max(t1) AS last,
             count(DISTINCT CAST(hour AS DATE)) AS days, coalesce(_mx_key(accessor) = mailbox, false) AS own
      FROM _mx_agg GROUP BY host, mailbox, accessor, client_ip, ua, path0),
    s AS (SELECT s0.* REPLACE (coalesce(names.full, s0.addr) AS addr) FROM s0 LEFT JOIN names USING (host, mailbox)),
    grants AS (SELECT host, mailbox, _mx_key(accessor) AS grantee, min(first) AS granted FROM s
               WHERE path0 = 'grant' GROUP BY ALL),
    internal AS (SELECT DISTINCT split_part(accessor, '@', 2) AS domain FROM s
                 WHERE path0 = '' AND accessor LIKE '%@%'),
    breadth AS (SELECT s.host, _mx_key(s.accessor) AS who, count(DISTINCT s.mailbox) AS mailboxes
                FROM s LEFT JOIN _mx_pair p USING (host, mailbox, accessor)
                WHERE s.path0 = '' AND NOT s.own AND NOT coalesce(p.steady, false) GROUP BY ALL),
    j AS (
      SELECT s.*, coalesce(p.steady, false) AS steady, coalesce({bl.anomalous_sql(b)}, false) AS anomalous,
             coalesce(br.mailboxes, 0) AS breadth, g.granted, list_contains({ips}, s.client_ip) AS attacker_ip,
             k.peak, mb.med AS hour_median, mb.mad AS hour_mad, mb.hours AS baseline_hours,
             s.path0 = 'forwarding' AND split_part(s.accessor, '@', 2) NOT IN (SELECT domain FROM internal) AS external
      FROM s
      LEFT JOIN _mx_pair p USING (host, mailbox, accessor)
      LEFT JOIN _mx_speak k USING (host, mailbox, accessor, client_ip, ua, path0)
      LEFT JOIN _mx_mbase mb USING (host, mailbox)
      LEFT JOIN breadth br ON br.host = s.host AND br.who = _mx_key(s.accessor)
      LEFT JOIN grants g ON g.host = s.host AND g.mailbox = s.mailbox AND g.grantee = _mx_key(s.accessor)
                        AND s.path0 = '' AND NOT s.own AND g.granted <= s.last)
    SELECT *,
      CASE WHEN path0 IN ('ssrf-ews', 'export-cmdlet', 'export-file-download') THEN 'taken'
           WHEN path0 = 'forwarding' THEN CASE WHEN external THEN 'taken' ELSE 'routine' END
           WHEN path0 = 'grant' THEN 'granted'
           WHEN own THEN CASE WHEN anomalous AND attacker_ip THEN 'abnormal' ELSE 'routine' END
           WHEN granted IS NOT NULL THEN 'taken'
           WHEN steady THEN 'routine'
           WHEN attacker_ip OR breadth >= 2 OR anomalous THEN 'abnormal'
           ELSE 'routine' END AS verdict,
      CASE WHEN path0 = 'grant' OR (path0 = '' AND NOT own AND granted IS NOT NULL) THEN 'delegate/permission'
           WHEN path0 <> '' THEN path0
           WHEN own THEN 'stolen-credentials'
           WHEN steady THEN 'delegate/permission'
           ELSE 'stolen-credentials' END AS path
    FROM j""")
    listed = case.query(
        f"SELECT * FROM _mx_sess WHERE verdict IN {LISTED} ORDER BY first, mailbox, host, accessor, client_ip, ua, path0"
    )
    ops = _operations(case)
    evidence = _evidence(case, samples)
    sessions = [_session(s, ops, evidence) for s in listed]
    sessions = _fold_grants(sessions)
    readers = case.query(
        """SELECT host, accessor, path, count(DISTINCT mailbox) AS mailboxes, sum(n) AS operations,
                  sum(bytes) AS bytes, max(days) AS days, min(first) AS first, max(last) AS last
           FROM _mx_sess WHERE verdict = 'routine' AND NOT own AND path0 = '' GROUP BY ALL
           ORDER BY mailboxes DESC, bytes DESC NULLS LAST LIMIT 50""",
    )
    for r in readers:
        r["first"], r["last"] = _iso(r["first"]), _iso(r["last"])
    return {
        "sessions": sessions,
        "readers": readers,
        "baseline": window,
        "coverage": coverage(case, present, window),
    }


def _operations(case: CaseReader) -> dict[tuple[Any, ...], dict[str, int]]:
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    for r in case.fetch(f"""
        SELECT a.host, a.mailbox, a.accessor, a.client_ip, a.ua, a.path0, a.op, sum(a.n)
        FROM _mx_agg a SEMI JOIN (SELECT * FROM _mx_sess WHERE verdict IN {LISTED}) s
             USING (host, mailbox, accessor, client_ip, ua, path0)
        GROUP BY ALL"""):
        out.setdefault(tuple(r[:6]), {})[r[6]] = int(r[7])
    return out


def _evidence(case: CaseReader, samples: int) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """The first `samples` records of each listed session as (path, line), from the samples kept in
    `_mx_agg`, plus the HttpProxy row of each EWS request among them (the front end of the same request)."""
    got = case.fetch(f"""
        WITH e AS (
          SELECT a.host, a.mailbox, a.accessor, a.client_ip, a.ua, a.path0, unnest(a.ev) AS x
          FROM _mx_agg a SEMI JOIN (SELECT * FROM _mx_sess WHERE verdict IN {LISTED}) s
               USING (host, mailbox, accessor, client_ip, ua, path0)),
        n AS (SELECT *, row_number() OVER (PARTITION BY host, mailbox, accessor, client_ip, ua, path0 ORDER BY x) AS i
              FROM e)
        SELECT n.host, n.mailbox, n.accessor, n.client_ip, n.ua, n.path0, f.log_table, f.path,
               n.x % {LINE_SPAN} AS line, n.x // {LINE_SPAN} AS art
        FROM n LEFT JOIN artifacts f ON f.id = n.x // {LINE_SPAN}
        WHERE i <= {int(samples)}""")
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    by_table: dict[str, list[dict[str, Any]]] = {}
    for r in got:
        e = {"source": _source_of(r[6]), "path": r[7], "line": int(r[8]), "time": None,
             "artifact": int(r[9])}  # fmt: skip
        out.setdefault(tuple(r[:6]), []).append(e)
        by_table.setdefault(r[6] or "", []).append(e)
    reqids: dict[str, tuple[Any, ...]] = {}
    for table, items in by_table.items():
        fam = family_of_table(table) if table else None
        if fam is None or fam.kind not in ("log", "events"):
            continue
        t = Table(case, fam)
        ts = fam.time_sql
        req = t.col("RequestId") if fam is EWS else "NULL"
        if not t.exists:
            continue
        keys = [(e["artifact"], e["line"]) for e in items]
        times = {k: tuple(v.values()) for k, v in case.rows_at(fam, keys, f"{ts}, {req}").items()}
        for e in items:
            ts_v, reqid = times.get((e["artifact"], e["line"]), (None, None))
            e["time"] = _iso(ts_v)
            if reqid:
                reqids[reqid] = next(k for k, v in out.items() if e in v)
    hp = Table(case, HTTPPROXY)
    if reqids and hp.has("RequestId"):
        with case.registered("_mx_req", pa.table({"reqid": list(reqids)})):
            for reqid, path, line, ts, art in case.fetch(
                f'SELECT h."RequestId", a.path, h._line, h._ts, h._artifact FROM {hp.name} h '
                'SEMI JOIN _mx_req q ON q.reqid = h."RequestId" LEFT JOIN artifacts a ON a.id = h._artifact ORDER BY h._ts'
            ):
                out[reqids[reqid]].append(
                    {"source": "httpproxy", "path": path, "line": line, "time": _iso(ts), "artifact": art}
                )
    for ev in out.values():
        ev.sort(key=lambda e: (e["time"] or "", e["path"] or "", e["line"] or 0))
    return out


def _session(s: dict[str, Any], ops: dict[tuple[Any, ...], dict[str, int]], ev: dict) -> dict[str, Any]:
    key = tuple(s[k] for k in KEY)
    reasons = []
    if s["path0"] == "ssrf-ews":
        reasons.append("EWS reached as the Exchange computer account (the ProxyLogon SSRF)")
    elif s["path0"] == "export-cmdlet":
        reasons.append("mailbox export or search cmdlet")
    elif s["path0"] == "export-file-download":
        reasons.append("an exported mailbox file downloaded from a web folder")
    elif s["path0"] == "forwarding":
        reasons.append("mail forwarded to an outside address")
    elif s["path0"] == "grant":
        reasons.append("mailbox permission granted; no use of it seen")
    if s["granted"] is not None:
        reasons.append("read after a permission grant in the window")
    if s["attacker_ip"]:
        reasons.append("from an address seen in a high-confidence finding")
    if s["breadth"] >= 2 and not s["own"] and s["path0"] == "":
        reasons.append(f"the account read {s['breadth']} other mailboxes outside any steady pattern")
    if s["anomalous"]:
        reasons.append(
            f"busiest hour {s['peak']:,} bytes against the mailbox's hourly median {s['hour_median']:,.0f} "
            f"(MAD {s['hour_mad']:,.0f}, {s['baseline_hours']} hours)"
        )
    return {
        "host": s["host"],
        "mailbox": s["addr"] or s["mailbox"],
        "mailbox_key": s["mailbox"],
        "accessor": s["accessor"],
        "client_ip": s["client_ip"],
        "user_agent": s["ua"],
        "path": s["path"],
        "verdict": s["verdict"],
        "first": _iso(s["first"]),
        "last": _iso(s["last"]),
        "operations": dict(sorted(ops.get(key, {}).items())),
        "requests": int(s["n"]),
        "items": int(s["items"] or 0),
        "bytes": int(s["bytes"]) if s["sized"] else None,
        "days": int(s["days"]),
        "reasons": reasons,
        "evidence": ev.get(key, []),
    }


def _fold_grants(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A grant that was used becomes part of the access it enabled (its evidence and operation)."""
    used = [s for s in sessions if s["path"] == "delegate/permission" and s["verdict"] == "taken"]
    out = []
    for s in sessions:
        if s["verdict"] == "granted":
            who = s["accessor"].rsplit("\\", 1)[-1].split("@", 1)[0]
            users = [
                u for u in used
                if u["host"] == s["host"] and u["mailbox_key"] == s["mailbox_key"]
                and u["accessor"].rsplit("\\", 1)[-1].split("@", 1)[0] == who
            ]  # fmt: skip
            if users:
                u = users[0]
                u["operations"] = dict(sorted({**u["operations"], **s["operations"]}.items()))
                u["evidence"] = sorted(s["evidence"] + u["evidence"], key=lambda e: (e["time"] or "", e["line"] or 0))
                u["first"] = min(u["first"], s["first"])
                u["reasons"] = ["permission granted, then used", *[r for r in u["reasons"] if "grant" not in r]]
                continue
        out.append(s)
    return out


def coverage(case: CaseReader, present: list[str], window: dict[str, Any]) -> list[dict[str, str]]:
    """Which paths could be checked with the logs of this case, and why not."""
    has = set(present)
    sized_iis = bool(has & {"iis"}) and Table(case, IIS).has("sc-bytes")

    def item(path: str, ok: bool, why: str, partial: str | None = None) -> dict[str, str]:
        status = "checked" if ok and not partial else ("partial" if ok else "not checked")
        return {"path": path, "status": status, "reason": partial or ("" if ok else why)}

    unnamed = 0
    if "httpproxy" in has and "ews" not in has:
        unnamed = case.fetch("SELECT count(*) FROM _mx_hp WHERE anchor LIKE 'serverinfo~%/ews/%'")[0][0]
    out = [
        item(
            "ssrf-ews",
            "ews" in has,
            "no EWS logs: the mailboxes read through the SSRF cannot be named",
            None
            if "httpproxy" in has or "ews" not in has
            else "no HttpProxy logs: client addresses of EWS requests unknown",
        ),
        item(
            "stolen-credentials",
            bool(has & {"ews", "httpproxy"}),
            "neither EWS nor HttpProxy logs",
            "baseline window shorter than 2 days: steady readers cannot be told apart"
            if (window.get("days") or 0) < 2 and has & {"ews", "httpproxy"}
            else None,
        ),
        item("export-cmdlet", "cmdlets" in has, "no MSExchange Management events or cmdlet logs"),
        item(
            "export-file-download",
            "iis" in has and "cmdlets" in has,
            "no IIS logs" if "iis" not in has else "no cmdlet events to name the exported mailboxes",
            None if sized_iis or "iis" not in has else "IIS logs without sc-bytes: download sizes unknown",
        ),
        item(
            "forwarding",
            "cmdlets" in has or "tracking" in has,
            "neither cmdlet events nor Message Tracking logs",
            None
            if "tracking" in has or "cmdlets" not in has
            else "no Message Tracking logs: forwarded mail not counted",
        ),
        item(
            "delegate/permission",
            bool(has & {"ews", "httpproxy"}),
            "neither EWS nor HttpProxy logs",
            None
            if "cmdlets" in has or not has & {"ews", "httpproxy"}
            else "no cmdlet events: permission grants unseen",
        ),
    ]
    if unnamed:
        out[0]["reason"] = f"{unnamed} SSRF request(s) to EWS in HttpProxy, mailbox unknown without EWS logs"
        out[0]["status"] = "partial"
    return out


def to_table(sessions: list[dict[str, Any]]) -> pa.Table:
    """The sessions as the case table `mailbox_access` (operations and evidence as JSON text)."""
    cols: dict[str, list[Any]] = {k: [] for k in (
        "host", "mailbox", "accessor", "client_ip", "user_agent", "path", "verdict", "first", "last", "requests",
        "items", "bytes", "days", "operations", "reasons", "evidence",
    )}  # fmt: skip
    for s in sessions:
        for k in cols:
            v = s[k]
            cols[k].append(json.dumps(v) if k in ("operations", "reasons", "evidence") else v)
    return pa.table(cols) if sessions else pa.table({k: pa.array([], pa.string()) for k in cols})


def _source_of(table: str | None) -> str | None:
    """The evidence label of the family stored in `table` (the table's name for any other)."""
    return SOURCE_OF_FAMILY.get(family_of_table(table).name, table) if table else table


def _iso(t: Any) -> str | None:
    return t.isoformat() + "Z" if t is not None else None
