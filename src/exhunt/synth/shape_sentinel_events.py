"""Export shape `sentinel-events`: the collection's Windows events as Microsoft Sentinel CSV exports.

`write_sentinel_events(collection_dir, out_dir)` copies the collection and replaces each Winlogbeat
NDJSON event file by a CSV export of the Log Analytics table its channel goes to: the Security log as
`SecurityEvent` rows (structured columns named like the EventData fields, plus `Account` and
`Activity`), every other log as `Event` rows that keep only `RenderedDescription` (message-only,
rendered as in `shape_message_only`). Times are written as the portal writes them
(`3/3/2021, 4:11:58.214 AM`, UTC). The answer key is copied with each event trace's path and line
moved to the CSV record that holds it.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from exhunt.synth.shape_message_only import _layouts, render

SHAPE = "sentinel-events"
TENANT = "6f1c0f2e-0000-4000-8000-000000000000"
SECURITY_EVENT = ["TenantId", "TimeGenerated [UTC]", "SourceSystem", "Account", "AccountType", "Computer",
                  "EventSourceName", "Channel", "Task", "Level", "EventID", "Activity"]  # fmt: skip
EVENT = ["TenantId", "SourceSystem", "TimeGenerated [UTC]", "Source", "EventLog", "Computer", "EventLevel",
         "EventLevelName", "EventID", "RenderedDescription", "Type"]  # fmt: skip
LEVEL_NUMBERS = {"error": "1", "warning": "2", "information": "4"}


def portal_time(iso: str) -> str:
    """`2021-03-03T04:11:58.214Z` -> `3/3/2021, 4:11:58.214 AM`."""
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    hour = dt.hour % 12 or 12
    return f"{dt.month}/{dt.day}/{dt.year}, {hour}:{dt:%M:%S}.{dt.microsecond // 1000:03d} {'AM' if dt.hour < 12 else 'PM'}"


def _security_row(event: dict[str, Any]) -> dict[str, str]:
    w = event["winlog"]
    data = {**(w.get("event_data") or {}), **(w.get("user_data") or {})}
    data.pop("xml_name", None)
    user = data.get("TargetUserName") or data.get("SubjectUserName") or ""
    domain = data.get("TargetDomainName") or data.get("SubjectDomainName") or ""
    title = str(event.get("message") or "").split("\n", 1)[0]
    return {
        "TenantId": TENANT,
        "TimeGenerated [UTC]": portal_time(event["@timestamp"]),
        "SourceSystem": "OpsManager",
        "Account": f"{domain}\\{user}" if user else "",
        "AccountType": "Machine" if user.endswith("$") else "User",
        "Computer": w.get("computer_name", ""),
        "EventSourceName": w.get("provider_name", ""),
        "Channel": w.get("channel", ""),
        "Task": str(w.get("task", "")),
        "Level": "8",
        "EventID": str(w.get("event_id", "")),
        "Activity": f"{w.get('event_id')} - {title}",
        **{k: str(v) for k, v in data.items()},
    }


def _event_row(event: dict[str, Any], layouts: dict[str, Any]) -> dict[str, str]:
    w = event["winlog"]
    level = str(w.get("level") or "information").lower()
    return {
        "TenantId": TENANT,
        "SourceSystem": "OpsManager",
        "TimeGenerated [UTC]": portal_time(event["@timestamp"]),
        "Source": w.get("provider_name", ""),
        "EventLog": w.get("channel", ""),
        "Computer": w.get("computer_name", ""),
        "EventLevel": LEVEL_NUMBERS.get(level, "4"),
        "EventLevelName": level.capitalize(),
        "EventID": str(w.get("event_id", "")),
        "RenderedDescription": render(event, layouts),
        "Type": "Event",
    }


def rewrite_events(src: Path, dst: Path, layouts: dict[str, Any]) -> dict[int, int]:
    """Write one NDJSON event file as a Sentinel CSV; returns {NDJSON line: CSV line of the record}."""
    events: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(src.read_text(encoding="utf-8", errors="replace").split("\n"), 1):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "winlog" in event:
            events.append((number, event))
    security = bool(events) and all(e["winlog"].get("channel") == "Security" for _, e in events)
    rows = [(n, _security_row(e) if security else _event_row(e, layouts)) for n, e in events]
    columns = list(SECURITY_EVENT if security else EVENT)
    if security:
        columns += sorted({k for _, r in rows for k in r} - set(columns))
    moved: dict[int, int] = {}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    line = 2
    for number, row in rows:
        moved[number] = line
        start = buf.tell()
        writer.writerow(row)
        line += buf.getvalue()[start:].count("\n")
    dst.write_text(buf.getvalue(), encoding="utf-8")
    return moved


def write_sentinel_events(collection_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Copy `collection_dir` to `out_dir` with every event file as a Sentinel CSV export."""
    collection_dir, out_dir = Path(collection_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    layouts = _layouts()
    renamed: dict[str, tuple[str, dict[int, int]]] = {}
    key_path = None
    for path in sorted(collection_dir.rglob("*")):
        rel = path.relative_to(collection_dir)
        if path.is_dir():
            (out_dir / rel).mkdir(parents=True, exist_ok=True)
            continue
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".ndjson":
            new_rel = rel.with_name("sentinel-" + rel.stem.removeprefix("winlogbeat-") + ".csv")
            renamed[rel.as_posix()] = (new_rel.as_posix(), rewrite_events(path, out_dir / new_rel, layouts))
        elif rel.as_posix() == "answer_key.json":
            key_path = path
        else:
            shutil.copy2(path, out_dir / rel)
    if key_path is not None:
        key = json.loads(key_path.read_text(encoding="utf-8"))
        key["export_shape"] = SHAPE
        for item in key.get("traces", []) + key.get("benign", []):
            if item.get("path") in renamed:
                new, lines = renamed[item["path"]]
                item["path"], item["line"] = new, lines.get(item.get("line"), item.get("line"))
        (out_dir / "answer_key.json").write_text(json.dumps(key, indent=1), encoding="utf-8")
    return {"shape": SHAPE, "event_files": len(renamed), "events": sum(len(m) for _, m in renamed.values())}
