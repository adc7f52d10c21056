"""Web shells joined to the requests that reached them: use, dormant shells and probes for gone ones.

A request's path is mapped to the file IIS would run through the sites' virtual directories: those
of a collected `applicationHost.config` when the host has one, else Exchange's default layout (as in
the applicationHost.config of an Exchange 2019 server that microsoft/CSS-Exchange keeps as a
HealthChecker test fixture, Diagnostics/HealthChecker/Tests/DataCollection/E19/Exchange/IIS/).
"Flagged as a web shell" means matched by one of the file rules in `FLAGGING_RULES` (content or
location), so the join follows those rules as they change. Web requests are read from every family
that records them (`Family.web`: IIS and HttpProxy), each through its own web fields (`url_stem`, `status`, `site`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from exhunt.case import CaseReader, quote
from exhunt.families import FAMILIES, Family, family

FLAGGING_RULES = ("file-webshell-content", "file-webshell-pst-or-certreq", "file-webshell-location", "file-yara-user")
SCRIPT_EXTENSIONS = (".aspx", ".ashx", ".asmx", ".asp", ".cshtml", ".vbhtml")

_V15 = "c:\\program files\\microsoft\\exchange server\\v15"
# (site, URL prefix, physical folder) of a default Exchange 2016/2019 install
DEFAULT_VDIRS: tuple[tuple[str, str, str], ...] = (
    ("frontend", "", "c:\\inetpub\\wwwroot"),
    *(("frontend", f"/{p}", f"{_V15}\\frontend\\httpproxy\\{d}") for p, d in (
        ("owa", "owa"), ("ecp", "ecp"), ("ews", "ews"), ("api", "rest"), ("autodiscover", "autodiscover"),
        ("microsoft-server-activesync", "sync"), ("oab", "oab"), ("powershell", "powershell"), ("mapi", "mapi"),
        ("rpc", "rpc"))),
    ("backend", "", f"{_V15}\\clientaccess"),
    *(("backend", f"/{p}", f"{_V15}\\clientaccess\\{d}") for p, d in (
        ("owa", "owa"), ("ecp", "ecp"), ("ews", "exchweb\\ews"), ("api", "rest"), ("autodiscover", "autodiscover"),
        ("microsoft-server-activesync", "sync"), ("oab", "oab"), ("powershell", "powershell-proxy"),
        ("mapi", "mapi"), ("mapi/emsmdb", "mapi\\emsmdb"), ("mapi/nspi", "mapi\\nspi"))),
)  # fmt: skip
# folders the front end serves from its own disk (everything else it proxies to a back end)
LOCAL_FRONTEND = r"^c:\\inetpub\\wwwroot\\|\\frontend\\httpproxy\\(owa|ecp)\\auth\\|^c:\\(programdata|users)\\"


def _web_families(case: CaseReader) -> list[Family]:
    tables = case.tables()
    return [f for f in FAMILIES if f.web and f.table in tables]


@lru_cache(maxsize=1)
def _flagging_rules() -> tuple[Any, ...]:
    from exhunt.rules.model import load_rules

    return tuple(r for r in load_rules() if r.id in FLAGGING_RULES and r.where is not None)


def _flagged_sql(case: CaseReader, params: dict[str, str]) -> tuple[str, list[Any]]:
    """SQL selecting the artifacts a web-shell file rule flags: rowid, host, lower-case Windows path."""
    from exhunt.rules.native import Compiler

    files = family("files")
    conds, args = [], []
    for rule in _flagging_rules():
        comp = Compiler(files, case.columns(files.table), params, case=case)
        conds.append(comp.compile(rule.where))
        args.extend(comp.args)
    where = " OR ".join(conds) or "false"
    sql = f"SELECT t.rowid AS rid, t.host, lower(t.win_path) AS wp FROM {quote(files.table)} t WHERE {where}"
    return sql, args


def _vdirs_sql(case: CaseReader) -> tuple[str, list[Any]]:
    """(host, site, prefix, phys) rows: the collected virtual directories, and the default layout for
    hosts without a collected applicationHost.config (host NULL)."""
    rows: list[Any] = []
    for host, site, prefix, phys in case.site_virtual_directories():
        kind = "backend" if "back end" in (site or "").lower() else "frontend"
        rows += [host, kind, prefix, _normal_folder(phys)]
    rows += [x for site, prefix, phys in DEFAULT_VDIRS for x in (None, site, prefix, phys)]
    values = ", ".join(["(?::VARCHAR, ?::VARCHAR, ?::VARCHAR, ?::VARCHAR)"] * (len(rows) // 4))
    return f"SELECT * FROM (VALUES {values}) v(host, site, prefix, phys)", rows


def _normal_folder(path: str) -> str:
    low = path.strip().strip('"').lower().replace("/", "\\")
    for var, value in (("%systemdrive%", "c:"), ("%programdata%", "c:\\programdata"), ("%windir%", "c:\\windows")):
        low = low.replace(var, value)
    return low.rstrip("\\")


def _requests_sql(case: CaseReader, fam: Family, paths: str = "true") -> str:
    """rid, host, site, lower-case path and status of the records of a web family (its web fields)
    whose path passes `paths` (SQL over `path`). Each distinct URL stem is made a path, and tested,
    once: far fewer stems than rows (the join's three rules on 1 GB of logs: 2.2 s -> 0.8 s; DuckDB
    pushing the tests below the DISTINCT, onto the 1.2 M rows, was then most of a rule's time)."""
    cols = case.column_map(fam.table)
    col = lambda name: f"t.{quote(cols[name.lower()])}" if name.lower() in cols else "NULL"  # noqa: E731
    web = fam.web_fields
    stem, status, site, table = web["url_stem"](col), web["status"](col), web["site"](col), quote(fam.table)
    return (
        f"SELECT r.rid, a.host, r.site, s.path, r.status FROM ("
        f"SELECT t.rowid AS rid, t.{quote(fam.artifact_column)} AS art, coalesce({site}, 'frontend') AS site, "
        f"{stem} AS stem, {status} AS status FROM {table} t) r "
        f"JOIN (SELECT * FROM (SELECT stem, regexp_replace(split_part(lower(stem), '?', 1), '/+$', '') AS path "
        # OFFSET 0 keeps the path tests above the DISTINCT: pushed below it, they ran on every row
        f"FROM (SELECT DISTINCT {stem} AS stem FROM {table} t OFFSET 0)) WHERE starts_with(path, '/') AND ({paths})) s "
        f"ON s.stem = r.stem JOIN artifacts a ON a.id = r.art"
    )


def _mapped_sql(
    case: CaseReader, fam: Family, paths: str = "true", path_args: tuple[Any, ...] = (), rows: str = "true"
) -> tuple[str, list[Any]]:
    """rid, host, site, status and path of the requests whose path passes `paths` (SQL over `path`,
    with `path_args`) and that pass `rows` (SQL over status and site), with the file each matching
    virtual directory maps the path to (`wp`), that directory's site (`vsite`) and its prefix length
    (`depth`: IIS uses the longest). Paths are mapped once each."""
    vdirs, args = _vdirs_sql(case)
    sql = f"""
        WITH vd AS ({vdirs}),
        req AS (SELECT * FROM ({_requests_sql(case, fam, paths)}) r WHERE {rows}),
        paths AS (SELECT DISTINCT host, site, path FROM req),
        own AS (SELECT DISTINCT host FROM vd WHERE host IS NOT NULL),
        mp AS (
            SELECT paths.host, paths.site, paths.path, vd.site AS vsite, length(vd.prefix) AS depth,
                   vd.phys || replace(substr(paths.path, length(vd.prefix) + 1), '/', '\\') AS wp
            FROM paths JOIN vd
              ON (vd.host = paths.host OR (vd.host IS NULL AND paths.host NOT IN (SELECT host FROM own)))
             AND (vd.prefix = '' OR paths.path = vd.prefix OR starts_with(paths.path, vd.prefix || '/'))
        )
        SELECT req.rid, req.host, req.site, mp.vsite, req.status, req.path, mp.depth, mp.wp
        FROM req JOIN mp ON mp.host IS NOT DISTINCT FROM req.host AND mp.site = req.site AND mp.path = req.path
    """
    return sql, [*args, *path_args]


def _named_like_flagged(case: CaseReader, params: dict[str, str]) -> tuple[str, tuple[Any, ...]]:
    """A `paths` condition: the request's last path segment is the name of a flagged file."""
    flagged, fargs = _flagged_sql(case, params)
    return f"regexp_extract(path, '[^/]*$') IN (SELECT regexp_extract(wp, '[^\\\\]*$') FROM ({flagged}))", tuple(fargs)


def _use(case: CaseReader, fam: Family, params: dict[str, str]) -> list[int]:
    mapped, margs = _mapped_sql(case, fam, *_named_like_flagged(case, params))
    flagged, fargs = _flagged_sql(case, params)
    sql = f"""
        WITH m AS ({mapped}), f AS ({flagged})
        SELECT DISTINCT m.rid FROM m JOIN f ON f.wp = m.wp AND f.host IS NOT DISTINCT FROM m.host
    """
    return [r[0] for r in case.fetch(sql, [*margs, *fargs])]


def webshell_requests_iis(case: CaseReader, params: dict[str, str]) -> list[int]:
    """IIS requests whose path maps to a file flagged as a web shell."""
    fam = family("iis")
    return _use(case, fam, params) if fam in _web_families(case) else []


def webshell_requests_httpproxy(case: CaseReader, params: dict[str, str]) -> list[int]:
    """HttpProxy requests whose path maps to a file flagged as a web shell."""
    fam = family("httpproxy")
    return _use(case, fam, params) if fam in _web_families(case) else []


def dormant_webshells(case: CaseReader, params: dict[str, str]) -> list[int]:
    """Flagged files (artifact rowids) that no web request of their host maps to, on hosts whose web
    logs were collected."""
    fams = _web_families(case)
    if not fams:
        return []
    flagged, fargs = _flagged_sql(case, params)
    parts, args = [], []
    keep = _named_like_flagged(case, params)
    for fam in fams:
        mapped, margs = _mapped_sql(case, fam, *keep)
        parts.append(f"SELECT host, wp FROM ({mapped})")
        args += margs
    logged = " UNION ALL ".join(
        f"SELECT DISTINCT a.host FROM {quote(fam.table)} t JOIN artifacts a ON a.id = t.{quote(fam.artifact_column)}"
        for fam in fams
    )
    sql = f"""
        WITH f AS ({flagged}), seen AS ({" UNION ALL ".join(parts)}), logged AS ({logged})
        SELECT f.rid FROM f
        WHERE f.host IN (SELECT host FROM logged)
          AND NOT EXISTS (SELECT 1 FROM seen WHERE seen.wp = f.wp AND seen.host IS NOT DISTINCT FROM f.host)
    """
    return [r[0] for r in case.fetch(sql, [*fargs, *args])]


def missing_script_probes(case: CaseReader, params: dict[str, str]) -> list[int]:
    """IIS front-end requests answered 2xx for a script that is not on disk, in a folder the front end
    serves itself and whose collected files show the tree covers it. HttpProxy records are requests
    proxied to a back end, so the front end's disk says nothing about them and they are not judged."""
    fam = family("iis")
    if fam not in _web_families(case):
        return []
    exts = " OR ".join(f"ends_with(path, '{e}')" for e in SCRIPT_EXTENSIONS)
    mapped, margs = _mapped_sql(case, fam, exts, rows="site = 'frontend' AND status LIKE '2%'")
    sql = f"""
        WITH m AS ({mapped}),
        best AS (
            SELECT rid, host, wp FROM m
            WHERE vsite = 'frontend'
            QUALIFY row_number() OVER (PARTITION BY rid ORDER BY depth DESC) = 1
        ),
        files AS (SELECT host, lower(win_path) AS wp FROM artifacts WHERE win_path IS NOT NULL)
        SELECT best.rid FROM best
        WHERE regexp_matches(best.wp, ?)
          AND NOT EXISTS (SELECT 1 FROM files WHERE files.wp = best.wp AND files.host IS NOT DISTINCT FROM best.host)
          AND EXISTS (
              SELECT 1 FROM files
              WHERE files.host IS NOT DISTINCT FROM best.host
                AND regexp_replace(files.wp, '\\\\[^\\\\]*$', '') = regexp_replace(best.wp, '\\\\[^\\\\]*$', ''))
    """
    return [r[0] for r in case.fetch(sql, [*margs, LOCAL_FRONTEND])]
