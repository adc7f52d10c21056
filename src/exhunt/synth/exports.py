"""Export shapes: a generated collection rewritten as responders often receive it.

`EXPORT_SHAPES` is the registry: shape name -> `ExportShape(summary, convert)`. `convert(job)` rewrites
the raw logs of one collection in place through the `ShapeJob` helpers, which record where every
planted line went; `export_collection(root, shape)` then updates the answer key: a trace whose line
the shape carries gets its new path and line, a trace the shape cannot carry (a line it drops, a
column a rule needs that the shape lacks) stays listed with `required: false` and `not_carried`
saying why. Adding a shape is one function and one registry entry.

Shapes (the field names are the products' documented ones, see `exhunt/sources/maps/`):
- `splunk`: IIS logs as Splunk search exports (W3SVC1 as CSV, W3SVC2 as JSON lines), HttpProxy logs
  as Splunk CSV exports keeping the LogSchema column names.
- `elastic`: IIS logs as Filebeat IIS documents in ECS names (W3SVC1 as NDJSON, W3SVC2 wrapped in
  `_source` as elasticdump writes them).
- `sentinel`: IIS logs as `W3CIISLog` rows (W3SVC1 as the portal's CSV, W3SVC2 as JSON lines).
- `test-proxylogon`: only what Test-ProxyLogon.ps1 writes (its CVE-2021-26855 CSV of HttpProxy rows,
  its CVE-2021-26857 CSV of Unified Messaging errors, its 26858/27065 lists of log files).
- `headerless`: IIS logs without their `#` lines, Exchange logs without their `#Fields` line (and bare
  header row), some with a note in its place; separator lines added.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError

CRLF = "\r\n"


@dataclass(frozen=True)
class ExportShape:
    summary: str
    convert: Callable[[ShapeJob], None]


@dataclass
class ShapeJob:
    """One collection being rewritten: the helpers read its logs and record where each line went."""

    root: Path
    host: str
    moved: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)  # (old path, line) -> new
    replaced: set[str] = field(default_factory=set)  # old paths rewritten or removed
    dropped_why: dict[str, str] = field(default_factory=dict)  # old path -> why its lines are not carried
    columns: dict[str, set[str]] = field(default_factory=dict)  # family -> lower-cased columns carried (if cut)
    written: list[str] = field(default_factory=list)

    def logs(self, part: str) -> list[Path]:
        """The collection's files under a folder named `part` (e.g. `W3SVC1`, `Logging/HttpProxy`)."""
        return sorted(p for p in (self.root / self.host).rglob("*") if p.is_file() and f"/{part}/" in p.as_posix())

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def write(self, rel: str, lines: list[tuple[Any, str]], source: Path | None = None, newline: str = CRLF) -> None:
        """Write `lines` to `rel`, recording where each old line went. A line's origin is an old line
        number of `source`, a (path, line) pair, or None; text with line breaks inside (a quoted CSV
        value) takes several lines."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        number = 1
        out = []
        for origin, text in lines:
            if isinstance(origin, tuple):
                self.moved[(self.rel(origin[0]), origin[1])] = (rel, number)
            elif origin is not None and source is not None:
                self.moved[(self.rel(source), origin)] = (rel, number)
            out.append(text)
            number += text.count("\n") + 1
        path.write_bytes((newline.join(out) + newline).encode("utf-8"))
        self.written.append(rel)

    def remove(self, path: Path, why: str) -> None:
        """Take a raw log out of the collection; lines not moved elsewhere are not carried, because `why`."""
        rel = self.rel(path)
        self.replaced.add(rel)
        self.dropped_why.setdefault(rel, why)
        path.unlink()


def read_w3c(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {field: value}) for every data line of a W3C log, bound to the `#Fields` in force."""
    fields: list[str] = []
    for number, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1):
        if line.startswith("#Fields:"):
            fields = line.split(":", 1)[1].split()
        elif line and not line.startswith("#") and fields:
            yield number, dict(zip(fields, line.split(" "), strict=False))


def read_exchange(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: value}) for every data row of an Exchange CSV log (bound to its `#Fields`)."""
    text = path.read_bytes().decode("utf-8-sig", "replace")
    fields: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if line.startswith("#Fields:"):
            fields = line.split(":", 1)[1].strip().split(",")
        elif line and not line.startswith("#") and fields:
            values = next(csv.reader([line]), [])
            yield number, dict(zip(fields, values, strict=False))


def _csv_line(values: list[str], quote_all: bool = True) -> str:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL, lineterminator="").writerow(values)
    return buf.getvalue()


def _iis_time(rec: dict[str, str]) -> str:
    return f"{rec.get('date', '')}T{rec.get('time', '')}"


def _present(v: str | None) -> bool:
    return v not in (None, "", "-")


def _splunk_name(name: str) -> str:
    """Splunk's cleaning of a W3C field name: every character outside [A-Za-z0-9_] becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


# --- splunk ------------------------------------------------------------------------------------


def _splunk(job: ShapeJob) -> None:
    """One export per IIS site (W3SVC1 as CSV, W3SVC2 as JSON lines) and per HttpProxy protocol."""
    for site in ("W3SVC1", "W3SVC2"):
        paths = job.logs(site)
        rows = [(path, number, rec) for path in paths for number, rec in read_w3c(path)]
        fields = list(dict.fromkeys(f for _, _, rec in rows for f in rec))
        out_rel = f"{job.host}/SIEM/splunk/iis-{site}"
        lines: list[tuple[Any, str]] = []
        if site == "W3SVC1":
            lines.append((None, _csv_line(["_time", "host", "source", "sourcetype", *map(_splunk_name, fields)])))
        for path, number, rec in rows:
            meta = {"host": job.host, "source": _win_source(path), "sourcetype": "ms:iis:auto"}
            when = f"{_iis_time(rec)}.000+00:00"
            if site == "W3SVC1":
                line = _csv_line([when, *meta.values(), *(rec.get(f, "") for f in fields)])
            else:
                result = {"_time": when, **meta, **{_splunk_name(k): v for k, v in rec.items()}}
                line = json.dumps({"preview": False, "result": result}, separators=(",", ":"))
            lines.append(((path, number), line))
        if rows:
            job.write(
                out_rel + (".csv" if site == "W3SVC1" else ".json"), lines, newline=CRLF if site == "W3SVC1" else "\n"
            )
        for path in paths:
            job.remove(path, "replaced by its Splunk export")
    for proto in sorted({p.parent.name for p in job.logs("Logging/HttpProxy")}):
        paths = job.logs(f"Logging/HttpProxy/{proto}")
        rows = [(path, number, rec) for path in paths for number, rec in read_exchange(path)]
        fields = list(dict.fromkeys(f for _, _, rec in rows for f in rec))
        lines = [(None, _csv_line(["_time", "host", "source", "sourcetype", *fields]))]
        for path, number, rec in rows:
            meta = [job.host, _win_source(path), "MSExchange:2016:HttpProxy"]
            lines.append(
                ((path, number), _csv_line([rec.get("DateTime", ""), *meta, *(rec.get(f, "") for f in fields)]))
            )
        job.write(f"{job.host}/SIEM/splunk/httpproxy-{proto}.csv", lines)
        for path in paths:
            job.remove(path, "replaced by its Splunk export")


def _win_source(path: Path) -> str:
    parts = path.as_posix().split("/C/", 1)
    return "C:\\" + parts[1].replace("/", "\\") if len(parts) == 2 else path.name


# --- elastic -----------------------------------------------------------------------------------

_ECS_IIS = {  # W3C field -> ECS field of the Filebeat IIS module (access fileset)
    "s-ip": "destination.address",
    "cs-method": "http.request.method",
    "cs-uri-stem": "url.path",
    "cs-uri-query": "url.query",
    "s-port": "destination.port",
    "cs-username": "user.name",
    "c-ip": "source.address",
    "cs(User-Agent)": "user_agent.original",
    "cs(Referer)": "http.request.referrer",
    "cs-host": "destination.domain",
    "sc-status": "http.response.status_code",
    "sc-substatus": "iis.access.sub_status",
    "sc-win32-status": "iis.access.win32_status",
    "sc-bytes": "http.response.body.bytes",
}
_NUMERIC = {"destination.port", "http.response.status_code", "iis.access.sub_status", "iis.access.win32_status",
            "http.response.body.bytes"}  # fmt: skip


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _ecs_doc(rec: dict[str, str], host: str) -> dict[str, Any]:
    flat: dict[str, Any] = {"@timestamp": f"{_iis_time(rec)}.000Z"}
    for w3c, ecs in _ECS_IIS.items():
        v = rec.get(w3c)
        if not _present(v):
            continue
        if w3c == "cs(User-Agent)":
            v = v.replace("+", " ")  # type: ignore[union-attr]
        flat[ecs] = int(v) if ecs in _NUMERIC and v.isdigit() else v  # type: ignore[union-attr]
    if _present(rec.get("c-ip")):
        flat["source.ip"] = rec["c-ip"]
    if _present(rec.get("time-taken")) and rec["time-taken"].isdigit():
        flat["event.duration"] = int(rec["time-taken"]) * 1_000_000
    flat.update({"event.module": "iis", "event.dataset": "iis.access", "host.name": host, "ecs.version": "1.12.0"})
    return _nest(flat)


def _elastic(job: ShapeJob) -> None:
    """One NDJSON export per IIS site; W3SVC2's documents wrapped in `_source` as elasticdump writes."""
    job.columns["iis"] = {c.lower() for c in [*_ECS_IIS, "date", "time"]}
    for site in ("W3SVC1", "W3SVC2"):
        paths = job.logs(site)
        lines: list[tuple[Any, str]] = []
        for path in paths:
            for number, rec in read_w3c(path):
                doc = _ecs_doc(rec, job.host)
                if site == "W3SVC2":
                    doc = {"_index": "filebeat-7.10.2-2021.03", "_id": f"{path.stem}-{number}", "_source": doc}
                lines.append(((path, number), json.dumps(doc, separators=(",", ":"))))
        if lines:
            job.write(f"{job.host}/SIEM/elastic/filebeat-iis-{site}.ndjson", lines, newline="\n")
        for path in paths:
            job.remove(path, "replaced by its Elastic export")


# --- sentinel ----------------------------------------------------------------------------------

_SENTINEL_IIS = {  # W3C field -> W3CIISLog column
    "s-sitename": "sSiteName", "s-computername": "sComputerName", "s-ip": "sIP", "cs-method": "csMethod",
    "cs-uri-stem": "csUriStem", "cs-uri-query": "csUriQuery", "s-port": "sPort", "cs-username": "csUserName",
    "c-ip": "cIP", "cs-version": "csVersion", "cs(User-Agent)": "csUserAgent", "cs(Cookie)": "csCookie",
    "cs(Referer)": "csReferer", "cs-host": "csHost", "sc-status": "scStatus", "sc-substatus": "scSubStatus",
    "sc-win32-status": "scWin32Status", "sc-bytes": "scBytes", "cs-bytes": "csBytes", "time-taken": "TimeTaken",
}  # fmt: skip


def _sentinel(job: ShapeJob) -> None:
    """One export per IIS site: W3SVC1 as the portal's CSV, W3SVC2 as JSON lines."""
    columns = ["TenantId", "SourceSystem", "Computer", *_SENTINEL_IIS.values(), "Type"]
    for site in ("W3SVC1", "W3SVC2"):
        paths = job.logs(site)
        lines: list[tuple[Any, str]] = []
        if site == "W3SVC1":
            lines.append((None, _csv_line(["TimeGenerated [UTC]", *columns], quote_all=False)))
        for path in paths:
            for number, rec in read_w3c(path):
                row = {"TimeGenerated": f"{_iis_time(rec)}Z", "TenantId": "00000000-0000-0000-0000-000000000000",
                       "SourceSystem": "OpsManager", "Computer": f"{job.host}.corp.example", "Type": "W3CIISLog"}  # fmt: skip
                row.update({col: rec[w3c] for w3c, col in _SENTINEL_IIS.items() if w3c in rec})
                if site == "W3SVC1":
                    line = _csv_line([row["TimeGenerated"], *(row.get(c, "") for c in columns)], quote_all=False)
                else:
                    line = json.dumps(row, separators=(",", ":"))
                lines.append(((path, number), line))
        if paths:
            ext = ".csv" if site == "W3SVC1" else ".json"
            job.write(f"{job.host}/SIEM/sentinel/W3CIISLog-{site}{ext}", lines, newline="\n")
        for path in paths:
            job.remove(path, "replaced by its Sentinel export")


# --- test-proxylogon ---------------------------------------------------------------------------

TPL_26855_COLUMNS = ["DateTime", "RequestId", "ClientIPAddress", "UrlHost", "UrlStem", "RoutingHint", "UserAgent",
                     "AnchorMailbox", "HttpStatus"]  # fmt: skip


def _like(value: str, pattern: str) -> bool:
    """PowerShell's case-insensitive -like with `*` wildcards."""
    rx = "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"
    return re.match(rx, value, re.IGNORECASE | re.DOTALL) is not None


def _tpl_26855_hit(anchor: str) -> bool:
    return (
        _like(anchor, "ServerInfo~*/*")
        and not _like(anchor, "ServerInfo~*/autodiscover*")
        and not _like(anchor, "ServerInfo~localhost*/*")
    )


def _tpl_time(iso: str) -> str:
    """Export-Csv's en-US rendering of a DateTime (the exporting machine's local time; UTC here)."""
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return f"{dt.month}/{dt.day}/{dt.year} {dt.hour % 12 or 12}:{dt:%M:%S} {'AM' if dt.hour < 12 else 'PM'}"


def _test_proxylogon(job: ShapeJob) -> None:
    out = f"{job.host}/Test-ProxyLogonLogs/{job.host}"
    job.columns["httpproxy"] = {c.lower() for c in [*TPL_26855_COLUMNS, "ClientIpAddress"]}
    hits: list[tuple[Any, str]] = [
        (None, "#TYPE Selected.System.Management.Automation.PSCustomObject"),
        (None, _csv_line(TPL_26855_COLUMNS)),
    ]
    for path in job.logs("Logging/HttpProxy"):
        head = path.read_bytes()[:200].decode("utf-8-sig", "replace")
        bare_header = not head.startswith("#")  # Import-Csv binds a file's columns from its first line
        if bare_header and "ServerInfo~" in path.read_text("utf-8", "replace"):
            for number, rec in read_exchange(path):
                if _tpl_26855_hit(rec.get("AnchorMailbox", "")):
                    rec = {**rec, "ClientIPAddress": rec.get("ClientIpAddress", "")}
                    hits.append(((path, number), _csv_line([rec.get(c, "") for c in TPL_26855_COLUMNS])))
        job.remove(path, "Test-ProxyLogon keeps only the HttpProxy rows with AnchorMailbox ServerInfo~*/*")
    if len(hits) > 2:
        job.write(f"{out}-Cve-2021-26855.csv", hits)

    um: list[tuple[Any, str]] = [
        (None, "#TYPE Selected.System.Diagnostics.Eventing.Reader.EventLogRecord"),
        (None, _csv_line(["TimeCreated", "MachineName", "Message"])),
    ]
    for path in sorted((job.root / job.host / "EventLogs").glob("*.ndjson")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if "MSExchange Unified Messaging" not in line:
                continue
            ev = json.loads(line)
            win = ev.get("winlog", {})
            message = ev.get("message", "")
            if win.get("level") == "error" and "System.InvalidCastException" in message:
                um.append(
                    ((path, number), _csv_line([_tpl_time(ev["@timestamp"]), win.get("computer_name", ""), message]))
                )
        job.remove(path, "Test-ProxyLogon keeps only Unified Messaging errors with System.InvalidCastException")
    if len(um) > 2:
        job.write(f"{out}-Cve-2021-26857.csv", um)

    for cve, part, needle, why in (
        ("26858", "Logging/OABGeneratorLog", "Download failed and temporary file", "OAB generator"),
        ("27065", "Logging/ECP/Server", "VirtualDirectory", "ECP Server"),
    ):
        listed = []
        for path in job.logs(part):
            text = path.read_text("utf-8", "replace")
            if needle in text and (cve != "27065" or re.search(r"Set-.+VirtualDirectory", text)):
                listed.append((None, _win_source(path)))
            job.remove(path, f"Test-ProxyLogon lists the {why} log files that match, not their lines")
        if listed:
            job.write(f"{out}-Cve-2021-{cve}.log", listed, None)
    for path in [p for p in job.root.rglob("*") if p.is_file()]:
        if "/Test-ProxyLogonLogs/" not in path.as_posix() and path.name != "answer_key.json":
            job.remove(path, "not part of Test-ProxyLogon's output")
    for d in sorted(job.root.rglob("*"), key=lambda p: -len(p.parts)):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


# --- headerless --------------------------------------------------------------------------------

_HEADERLESS_EXCHANGE = ("Logging/HttpProxy", "Logging/EWS", "Logging/CmdletInfra", "Logging/ECP/Server",
                        "Logging/OABGeneratorLog")  # fmt: skip


def _headerless(job: ShapeJob) -> None:
    for site in ("W3SVC1", "W3SVC2"):
        for path in job.logs(site):
            raw = path.read_bytes().decode("utf-8", "replace").split("\n")
            lines: list[tuple[Any, str]] = [(None, f"===== {path.name} (excerpt, header not copied) =====")]
            lines += [(n, ln.rstrip("\r")) for n, ln in enumerate(raw, 1) if ln.strip() and not ln.startswith("#")]
            lines.append((None, "-----"))
            tmp = path.with_name(path.name + ".tmp")
            rel_tmp = job.rel(tmp)
            job.write(rel_tmp, lines, path)
            path.unlink()
            tmp.rename(path)
            _rename_moves(job, rel_tmp, job.rel(path))
    k = 0
    for part in _HEADERLESS_EXCHANGE:
        for path in job.logs(part):
            data = path.read_bytes()
            bom = data.startswith(b"\xef\xbb\xbf")
            raw = data.decode("utf-8-sig", "replace").split("\n")
            lines = []
            for n, ln in enumerate(raw, 1):
                ln = ln.rstrip("\r")
                if n == 1 and not ln.startswith("#"):
                    continue  # the bare header row names the fields too
                if ln.startswith("#Fields:"):
                    k += 1
                    if k % 2:
                        lines.append((None, "#Note: the field list was removed when this log was collected"))
                    continue
                if ln:
                    lines.append((n, ln))
            while lines and lines[-1][1] == "":
                lines.pop()
            cut = not data.endswith(b"\n")
            tmp = path.with_name(path.name + ".tmp")
            job.write(job.rel(tmp), lines, path)
            body = (b"\xef\xbb\xbf" if bom else b"") + tmp.read_bytes()
            if cut:  # keep a truncated last line truncated
                body = body.rstrip(b"\r\n")
            path.write_bytes(body)
            tmp.unlink()
            job.written.remove(job.rel(tmp))
            _rename_moves(job, job.rel(tmp), job.rel(path))


def _rename_moves(job: ShapeJob, old: str, new: str) -> None:
    for k, (p, n) in list(job.moved.items()):
        if p == old:
            job.moved[k] = (new, n)
    if old in job.written:
        job.written[job.written.index(old)] = new


EXPORT_SHAPES: dict[str, ExportShape] = {
    "splunk": ExportShape("IIS and HttpProxy logs as Splunk CSV/JSON exports", _splunk),
    "elastic": ExportShape("IIS logs as Filebeat IIS documents (ECS), NDJSON", _elastic),
    "sentinel": ExportShape("IIS logs as Sentinel W3CIISLog exports, CSV and JSON", _sentinel),
    "test-proxylogon": ExportShape("only Test-ProxyLogon.ps1's output files", _test_proxylogon),
    "headerless": ExportShape("IIS and Exchange logs without their #Fields lines", _headerless),
}


def export_collection(root: Path, shape: str) -> dict[str, Any]:
    """Rewrite the generated collection at `root` in `shape` and update its answer key (saved)."""
    if shape not in EXPORT_SHAPES:
        raise UsageError(f"unknown export shape {shape!r}; choose from {', '.join(EXPORT_SHAPES)}")
    key_path = root / "answer_key.json"
    key = json.loads(key_path.read_text("utf-8"))
    job = ShapeJob(root, key["host"])
    EXPORT_SHAPES[shape].convert(job)
    needs = _rule_columns()
    for item in key["traces"] + key.get("benign", []):
        where = (item.get("path"), item.get("line"))
        if where in job.moved:
            item["path"], item["line"] = job.moved[where]  # type: ignore[index]
        elif item.get("path") in job.replaced:
            item["not_carried"] = job.dropped_why.get(item["path"], "not in this shape")
            item["required"] = False
            continue
        lacking = _lacking(item.get("rule"), needs, job.columns, item.get("source") or "")
        if lacking and item.get("required"):
            item["required"] = False
            item["not_carried"] = f"the shape has no {', '.join(sorted(lacking))} column(s), which the rule reads"
    key["export_shape"] = {
        "name": shape,
        "summary": EXPORT_SHAPES[shape].summary,
        "files": sorted(job.written),
        "carried": sum(1 for t in key["traces"] if t.get("required")),
        "not_carried": sum(1 for t in key["traces"] if "not_carried" in t),
    }
    key_path.write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    return key


def _rule_columns() -> dict[str, dict[str, set[str]]]:
    """rule id -> {family: lower-cased columns it reads there}."""
    from exhunt.rules.columns import rule_columns
    from exhunt.rules.model import load_rules

    return {rule.id: rule_columns(rule) for rule in load_rules()}


def _lacking(
    rule: str | None, needs: dict[str, dict[str, set[str]]], columns: dict[str, set[str]], source: str = ""
) -> set[str]:
    """The columns the trace's rule reads that the shape's rows of its family lack (the family told
    by the trace's `source`, e.g. `iis-frontend`; else every family of the rule the shape wrote)."""
    per_family = {f: cols for f, cols in needs.get(rule or "", {}).items() if f in columns}
    own = source.split("-")[0]
    if own in per_family:
        return per_family[own] - columns[own]
    return {c for f, cols in per_family.items() for c in cols - columns[f]}
