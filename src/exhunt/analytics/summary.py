"""The incident summary: who, when, which shells, which credentials, which mailboxes, what to do now."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from exhunt.analytics.timeline import BEYOND_SERVER, phase_of, ties_of
from exhunt.output.safe import terminal_text

_FILE_RULES = ("file-webshell", "file-event-webshell", "config-vdir", "webshell-dormant")
_USE_RULES = ("webshell-access", "process-webserver-shell", "webshell-tcp-tunnel", "webserver-explicit-credentials",
              "webshell-request")  # fmt: skip
_DUMP = re.compile(r"(lsass|\.dmp$|minidump)", re.I)


def incident_summary(
    findings: list[dict[str, Any]],
    sessions: list[dict[str, Any]],
    leads: list[dict[str, Any]],
    exposure: dict[str, Any] | None = None,
    server_ips: set[str] | None = None,
) -> dict[str, Any]:
    """A plain summary of the incident from the result's findings, the mailbox sessions and the leads
    (`server_ips`: the server's own addresses, never an attacker's)."""
    strong = [f for f in findings if f.get("severity") in ("high", "critical")]
    ips: set[str] = set()
    accounts: set[str] = set()
    for f in strong:
        t = ties_of(f)
        ips |= t["ips"]
        accounts |= {a for a in t["accounts"] if not a.split("@")[0].endswith("$")}
    bad = [s for s in sessions if s["verdict"] in ("taken", "abnormal")]
    ips |= {s["client_ip"] for s in bad if s["client_ip"] and s["path"] != "export-cmdlet"}
    accounts |= {
        s["accessor"] for s in bad if s["accessor"] and s["path"] in ("stolen-credentials", "delegate/permission")
    }
    accounts |= {s["accessor"] for s in bad if s["path"] == "export-cmdlet" and s["accessor"]}
    times = [t for f in strong for t in (f.get("first_seen"), f.get("last_seen")) if t]
    times += [t for s in bad for t in (s["first"], s["last"]) if t]
    shells = _shells(findings)
    dumps = sorted({e["path"] for f in strong if "lsass" in f.get("rule", "") or "T1003.001" in (f.get("attack") or [])
                    for e in f.get("evidence") or [] if e.get("path") and _DUMP.search(_win(e) or e["path"])})  # fmt: skip
    dumped = any("T1003" in t for f in strong for t in f.get("attack") or [])
    mailboxes = _mailboxes(bad)
    forwards = sorted({s["accessor"] for s in bad if s["path"] == "forwarding"})
    grants = sorted({f"{s['accessor']} on {s['mailbox']}" for s in bad if s["path"] == "delegate/permission"})
    machine = any(s["path"] == "ssrf-ews" for s in bad) or any(
        f.get("rule") == "ssrf-machine-account-backend" for f in strong
    )
    lead_accounts = sorted({x["value"] for x in leads if x["kind"] == "account"})
    beyond = sorted(
        ({"phase": phase, "rule": f.get("rule"), "title": f.get("title"), "host": f.get("host"),
          "first_seen": f.get("first_seen")}
         for f in strong if (phase := phase_of(f)[0]) in BEYOND_SERVER),
        key=lambda b: (BEYOND_SERVER.index(b["phase"]), str(b["first_seen"] or "")),
    )  # fmt: skip
    ips -= server_ips or set()
    summary = {
        "attacker_ips": sorted(ips),
        "accounts": sorted(accounts),
        "first_malicious": min(times) if times else None,
        "last_malicious": max(times) if times else None,
        "shells": shells,
        "credentials_at_risk": {
            "dumps": dumps,
            "lsass_dumped": dumped,
            "accounts_seen_with_attacker": sorted(accounts | set(lead_accounts)),
            "machine_account": machine or dumped,
        },
        "mailboxes_taken": mailboxes,
        "forwarding_to": forwards,
        "permission_grants": grants,
        "beyond_the_server": beyond,  # privilege escalation, lateral movement, impact: where it went next
        "leads": len(leads),
    }
    summary["what_to_do"] = _advice(summary, exposure)
    return summary


def _win(e: dict[str, Any]) -> str | None:
    rec = e.get("record") or {}
    return rec.get("win_path") or rec.get("TargetFilename") if isinstance(rec, dict) else None


def _shells(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    used_stems: set[str] = set()
    for f in findings:
        rule = f.get("rule", "")
        if rule.startswith(_USE_RULES) or (f.get("kind") == "webshell" and "access" in rule):
            used_stems |= {p.lower() for p in ties_of(f)["paths"]}
            for e in f.get("evidence") or []:
                rec = e.get("record") or {}
                stem = rec.get("cs-uri-stem") or rec.get("UrlStem") if isinstance(rec, dict) else None
                if stem:
                    used_stems.add(str(stem).lower())
        if rule.startswith(_FILE_RULES) and f.get("severity") in ("medium", "high", "critical"):
            for e in f.get("evidence") or []:
                path = e.get("path")
                if path and path.lower().endswith((".aspx", ".ashx", ".asmx", ".asp", ".config")):
                    files.setdefault(path, {"path": path, "first_seen": f.get("first_seen"), "rules": set()})
                    files[path]["rules"].add(rule)
    out = []
    for path, s in sorted(files.items()):
        name = path.replace("\\", "/").lower()
        used = any(stem and name.endswith(stem) for stem in used_stems)
        out.append({"path": path, "status": "used" if used else "dormant", "rules": sorted(s["rules"]),
                    "first_seen": s["first_seen"]})  # fmt: skip
    return out


def _mailboxes(bad: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for s in bad:
        m = by.setdefault(s["mailbox_key"], {"mailbox": s["mailbox"], "verdict": s["verdict"], "paths": set(),
                                             "items": 0, "bytes": 0, "first": s["first"], "last": s["last"]})  # fmt: skip
        if "@" in s["mailbox"] and "@" not in m["mailbox"]:
            m["mailbox"] = s["mailbox"]
        m["paths"].add(s["path"])
        m["items"] += s["items"]
        m["bytes"] += s["bytes"] or 0
        m["first"], m["last"] = min(m["first"], s["first"]), max(m["last"], s["last"])
        if s["verdict"] == "taken":
            m["verdict"] = "taken"
    return [{**m, "paths": sorted(m["paths"])} for m in sorted(by.values(), key=lambda x: -x["bytes"])]


def _advice(s: dict[str, Any], exposure: dict[str, Any] | None) -> list[str]:
    todo = []
    if s["shells"]:
        todo.append("Remove these web shells (keep a copy for the investigation first): "
                    + ", ".join(x["path"] for x in s["shells"]) + ".")  # fmt: skip
    if s["credentials_at_risk"]["dumps"]:
        todo.append("Delete the credential dumps after copying them as evidence: "
                    + ", ".join(s["credentials_at_risk"]["dumps"]) + ".")  # fmt: skip
    if s["credentials_at_risk"]["lsass_dumped"]:
        todo.append(
            "LSASS memory was dumped: reset the password of every account that signed in to this server "
            "since the first malicious activity, and reset krbtgt twice if a domain admin is among them."
        )
    if s["credentials_at_risk"]["accounts_seen_with_attacker"]:
        todo.append("Reset these accounts and end their sessions: "
                    + ", ".join(s["credentials_at_risk"]["accounts_seen_with_attacker"]) + ".")  # fmt: skip
    if s["credentials_at_risk"]["machine_account"]:
        todo.append("Rotate the Exchange server's machine account password (Reset-ComputerMachinePassword).")
    for b in s["beyond_the_server"][:5]:
        todo.append(f"The intrusion went past the mail server ({b['phase']}): {b['title']} on {b['host'] or 'a host'} "
                    f"from {b['first_seen']}; investigate that host and the domain, not only Exchange.")  # fmt: skip
    if s["forwarding_to"]:
        todo.append("Remove mailbox forwarding and inbox rules sending mail to " + ", ".join(s["forwarding_to"]) + ".")
    if s["permission_grants"]:
        todo.append(
            "Remove the mailbox permissions granted during the attack: " + "; ".join(s["permission_grants"]) + "."
        )
    if s["mailboxes_taken"]:
        todo.append(
            f"{len(s['mailboxes_taken'])} mailbox(es) were read or copied out: tell the owners and your "
            "data-protection officer; check for remaining mailbox export requests (Get-MailboxExportRequest)."
        )
    if s["attacker_ips"]:
        todo.append("Block and hunt for these addresses elsewhere: " + ", ".join(s["attacker_ips"]) + ".")
    for w in (exposure or {}).get("windows", [])[-1:]:
        fixes = sorted({fx for fam in (w.get("assessment") or {}).get("families", []) if fam.get("status") == "vulnerable"
                        for fx in fam.get("fixed_by", [])})  # fmt: skip
        if fixes:
            todo.append(f"Patch: the server ran {w.get('build')}; install {', '.join(fixes)} or a later CU with its "
                        "latest security update.")  # fmt: skip
    if s["leads"]:
        todo.append(f"Review the {s['leads']} lead(s): addresses and accounts seen only next to the attacker's.")
    return todo


def render_incident(summary: dict[str, Any] | None, console: Console) -> None:
    """Print the incident summary as a panel (every log-derived value escaped)."""
    if not summary or not (
        summary.get("attacker_ips") or summary.get("mailboxes_taken") or summary.get("shells")
        or summary.get("beyond_the_server")
    ):  # fmt: skip
        return
    e = terminal_text
    lines = []
    if summary.get("first_malicious"):
        lines.append(f"[bold]when[/] {e(summary['first_malicious'])} → {e(summary['last_malicious'])}")
    if summary.get("attacker_ips"):
        lines.append("[bold]attacker addresses[/] " + ", ".join(e(x) for x in summary["attacker_ips"][:12]))
    if summary.get("accounts"):
        lines.append("[bold]accounts used[/] " + ", ".join(e(x) for x in summary["accounts"][:12]))
    for sh in summary.get("shells", [])[:10]:
        lines.append(f"[bold]shell[/] {e(sh['path'])} ({e(sh['status'])})")
    for b in summary.get("beyond_the_server", [])[:6]:
        lines.append(f"[bold]beyond the server[/] {e(b['phase'])}: {e(b['title'])} ({e(b['host'] or '')}, "
                     f"{e(b['first_seen'] or '')})")  # fmt: skip
    cr = summary.get("credentials_at_risk") or {}
    if cr.get("dumps"):
        lines.append("[bold]credential dumps[/] " + ", ".join(e(x) for x in cr["dumps"][:6]))
    mbx = summary.get("mailboxes_taken", [])
    if mbx:
        total = sum(m["bytes"] for m in mbx)
        lines.append(f"[bold]mailboxes taken[/] {len(mbx)} ({total:,} bytes logged)")
        for m in mbx[:10]:
            size = f"{m['bytes']:,} bytes" if m["bytes"] else "size not logged"
            lines.append(f"  {e(m['mailbox'])}: {e(', '.join(m['paths']))}, {m['items']} item(s), {size}")
        if len(mbx) > 10:
            lines.append(f"  … {len(mbx) - 10} more in --json / exhunt timeline")
    if summary.get("what_to_do"):
        lines.append("[bold]what to do now[/]")
        lines += [f"  • {e(t, limit=600)}" for t in summary["what_to_do"]]
    console.print(Panel(Text.from_markup("\n".join(lines)), title="incident", title_align="left", border_style="red"))
