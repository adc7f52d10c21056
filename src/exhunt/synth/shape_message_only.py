"""Export shape `message-only`: a synthetic collection whose Windows events kept only their rendered text.

`write_message_only(collection_dir, out_dir)` copies the collection and rewrites every Winlogbeat
NDJSON event file line for line (same paths, same line numbers, so the answer key still points at
the right lines) into the flat JSON-lines shape of message-only exports: time, computer, channel,
provider, event id, level, record number and `Message`, and no EventData. The message is rendered
from the event's fields in the layout Windows uses (`sources/event_maps/message-layouts.yaml`):
Security/System sections with tab-indented labels, Sysmon `Key: value` lines, the MSExchange
CmdletLogs sentence. Events without a declared layout keep the generator's own message text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from exhunt import safe_yaml
from exhunt.sources.message_fields import LAYOUTS_FILE

SHAPE = "message-only"
_EXPLANATION = " ... (the explanatory text of the template)."


def _layouts() -> dict[str, Any]:
    return safe_yaml.load(safe_yaml.read_text(LAYOUTS_FILE))


def render_security(spec: dict[str, Any], data: dict[str, str]) -> str:
    """Title, then each section heading and its tab-indented `Label:\\t\\tvalue` lines."""
    raw_to_rendered = {f: {v: k for k, v in m.items()} for f, m in (spec.get("values") or {}).items()}
    lines = [str(spec.get("title") or ""), ""]
    for heading, labels in (spec.get("sections") or {}).items():
        indent = "\t" if heading else ""
        if heading:
            lines.append(f"{heading}:")
        for label, name in labels.items():
            value = data.get(name, "-")
            value = raw_to_rendered.get(name, {}).get(value, value)
            lines.append(f"{indent}{label}:\t\t{value}")
        lines.append("")
    if spec.get("trailer"):
        lines.append(str(spec["trailer"]) + _EXPLANATION)
    return "\n".join(lines).rstrip("\n")


def render_sysmon(title: str, order: list[str], data: dict[str, str]) -> str:
    """Sysmon's `Title:` line and one `Key: value` line per field, in schema order."""
    keys = [k for k in order if k in data] + [k for k in data if k not in order]
    return "\n".join([title] + [f"{k}: {data[k]}" for k in keys])


def render_cmdlet(event_id: int, data: dict[str, str]) -> str:
    status = "succeeded" if event_id == 1 else "failed"
    return f"Cmdlet {status}. Cmdlet {data.get('param1', '')}, parameters {data.get('param2', '')}."


def render(event: dict[str, Any], layouts: dict[str, Any]) -> str:
    """The rendered message of one Winlogbeat event, as a message-only export keeps it."""
    winlog = event.get("winlog") or {}
    data = {**(winlog.get("event_data") or {}), **(winlog.get("user_data") or {})}
    data = {k: str(v) for k, v in data.items() if k != "xml_name"}
    provider = str(winlog.get("provider_name") or "")
    event_id = int(winlog.get("event_id") or 0)
    original = str(event.get("message") or "")
    if provider == "Microsoft-Windows-Sysmon":
        order = [str(x) for x in (layouts["sysmon"]["fields"].get(event_id) or [])]
        return render_sysmon(original.split("\n", 1)[0], order, data)
    if provider in layouts["cmdlet"]["providers"] and event_id in layouts["cmdlet"]["event_ids"]:
        return render_cmdlet(event_id, data)
    security = layouts["security"]
    spec = security.get(event_id)
    if spec and provider in (security.get(spec.get("like")) or spec).get("providers", []):
        if "like" in spec:
            spec = {**security[spec["like"]], "title": spec.get("title")}
        return render_security(spec, data)
    return original


def message_only_record(event: dict[str, Any], layouts: dict[str, Any]) -> dict[str, Any]:
    """A Winlogbeat event as a flat message-only record (NXLog / dataset field names)."""
    winlog = event.get("winlog") or {}
    return {
        "TimeCreated": event.get("@timestamp"),
        "Computer": winlog.get("computer_name"),
        "Channel": winlog.get("channel"),
        "ProviderName": winlog.get("provider_name"),
        "EventID": winlog.get("event_id"),
        "Level": winlog.get("level"),
        "RecordNumber": winlog.get("record_id"),
        "Message": render(event, layouts),
    }


def rewrite_events(src: Path, dst: Path, layouts: dict[str, Any]) -> int:
    """Rewrite one NDJSON event file line for line; lines that are not events are kept as they are."""
    count = 0
    with (
        src.open(encoding="utf-8", errors="surrogateescape", newline="") as fin,
        dst.open("w", encoding="utf-8", errors="surrogateescape", newline="") as fout,
    ):
        for line in fin:
            body = line.rstrip("\r\n")
            ending = line[len(body) :]
            try:
                event = json.loads(body)
            except ValueError:
                fout.write(line)
                continue
            if not isinstance(event, dict) or "winlog" not in event:
                fout.write(line)
                continue
            fout.write(json.dumps(message_only_record(event, layouts), ensure_ascii=False) + (ending or "\n"))
            count += 1
    return count


def write_message_only(collection_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Copy `collection_dir` to `out_dir` with every event file in the message-only shape; returns
    {"shape", "event_files", "events"}. The answer key is copied with `export_shape` set."""
    collection_dir, out_dir = Path(collection_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    layouts = _layouts()
    files = events = 0
    for path in sorted(collection_dir.rglob("*")):
        rel = path.relative_to(collection_dir)
        target = out_dir / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".ndjson":
            events += rewrite_events(path, target, layouts)
            files += 1
        elif rel.as_posix() == "answer_key.json":
            key = json.loads(path.read_text(encoding="utf-8"))
            key["export_shape"] = SHAPE
            target.write_text(json.dumps(key, indent=1), encoding="utf-8")
        else:
            shutil.copy2(path, target)
    return {"shape": SHAPE, "event_files": files, "events": events}
