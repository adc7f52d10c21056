"""The fleet case database (DuckDB): per-host results, findings, hourly counts, spikes, indicators,
waves, campaigns and tenants; no raw records (those stay in each host's own case file).

Tables: hosts, host_results (each host's whole scan result document, JSON), findings, hourly, spikes, indicators, shared_indicators, waves, wave_order, campaigns,
campaign_hosts, campaign_indicators, tenants, problems, meta (key, value JSON; `result` is the whole
fleet document, `method` the spike method and its parameters).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from exhunt.errors import UsageError

_HOST_COLS = ("rank", "key", "tenant", "name", "path", "status", "reason", "attempts", "verdict", "exit_code",
              "severity", "findings", "first_compromise", "join_hour", "bytes_read", "result", "case")  # fmt: skip


def write_fleet_db(path: Path, doc: dict[str, Any], records: dict[str, dict[str, Any]]) -> None:
    path = Path(path)
    if path.exists():
        with open(path, "rb") as fh:
            if fh.read(12)[8:12] != b"DUCK":
                raise UsageError(f"{path}: exists and is not a DuckDB file; refusing to overwrite it")
        path.unlink()
    wal = Path(str(path) + ".wal")
    if wal.exists():
        wal.unlink()
    fleet = doc["fleet"]
    hosts = fleet["hosts"]
    findings = []
    for h in hosts:
        res = (records.get(h["key"]) or {}).get("result") or {}
        for i, f in enumerate(res.get("findings", []), 1):
            findings.append({
                "host": h["key"], "tenant": h["tenant"], "finding": i, "rule": f["rule"], "title": f.get("title"),
                "severity": f["severity"], "kind": f.get("kind"), "campaign": f.get("campaign"),
                "cves": list(f.get("cves") or []), "grp": json.dumps(f.get("group") or {}, default=str),
                "count": f.get("count"), "first_seen": f.get("first_seen"), "last_seen": f.get("last_seen"),
            })  # fmt: skip
    tables: dict[str, list[dict[str, Any]]] = {
        "hosts": [{c: h.get(c) for c in _HOST_COLS} for h in hosts],
        "findings": findings,
        "host_results": [
            {"host": h["key"], "result": json.dumps((records.get(h["key"]) or {}).get("result"), default=str)}
            for h in hosts
        ],
        "hourly": fleet["hourly"],
        "spikes": [{"host": h["key"], **s} for h in hosts for s in h.get("spikes", [])],
        "indicators": [
            {
                "host": h["key"],
                "type": i["type"],
                "value": i["value"],
                "first_seen": i["first_seen"],
                "rules": i["rules"],
            }
            for h in hosts
            for i in h.get("indicators", [])
        ],
        "shared_indicators": [dict(e, n_hosts=len(e["hosts"])) for e in fleet["shared_indicators"]],
        "waves": [
            {"wave": n, **{k: v for k, v in w.items() if k not in ("order", "records")}, **w["records"]}
            for n, w in enumerate(fleet["waves"], 1)
        ],
        "wave_order": [
            {"wave": n, "position": p, **o}
            for n, w in enumerate(fleet["waves"], 1)
            for p, o in enumerate(w["order"], 1)
        ],
        "campaigns": [{k: v for k, v in c.items() if k != "indicators"} for c in fleet["campaigns"]],
        "campaign_hosts": [{"campaign": c["id"], "host": h} for c in fleet["campaigns"] for h in c["hosts"]],
        "campaign_indicators": [{"campaign": c["id"], **i} for c in fleet["campaigns"] for i in c["indicators"]],
        "tenants": fleet["tenants"],
        "problems": fleet["problems"],
    }
    schemas = {
        "hourly": {"host": pa.string(), "hour": pa.string(), "class": pa.string(), "count": pa.int64()},
        "spikes": {
            "host": pa.string(),
            "hour": pa.string(),
            "class": pa.string(),
            "count": pa.int64(),
            "expected": pa.float64(),
            "p": pa.float64(),
        },
        "problems": {"tenant": pa.string(), "host": pa.string(), "reason": pa.string()},
        "wave_order": {
            "wave": pa.int64(),
            "position": pa.int64(),
            "host": pa.string(),
            "join_hour": pa.string(),
            "first_seen": pa.string(),
        },
    }
    con = duckdb.connect(str(path))
    try:
        for name, rows in tables.items():
            casts = "* REPLACE (result::JSON AS result)" if name == "host_results" and rows else "*"
            if rows:
                keys = list(dict.fromkeys(k for r in rows for k in r))  # from_pylist reads only the first row's keys
                table = pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])
            else:
                cols = schemas.get(name, {"empty": pa.string()})
                table = pa.table({c: pa.array([], t) for c, t in cols.items()})
            con.register("_rows", table)
            con.execute(f'CREATE TABLE "{name}" AS SELECT {casts} FROM _rows')
            con.unregister("_rows")
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value JSON)")
        for k, v in {"result": doc, "method": fleet["method"], "exhunt_version": doc["exhunt_version"]}.items():
            con.execute("INSERT INTO meta VALUES (?, ?)", [k, json.dumps(v, default=str)])
    finally:
        con.close()
