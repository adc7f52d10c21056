"""Microsoft Sentinel / Log Analytics `SecurityEvent` and `Event` rows -> the flat event shape the
JSON-lines reader maps (declared in `event_maps/sentinel.yaml`).

Structured columns named like EventData fields (NewProcessName, CommandLine, ParentProcessName,
TargetUserName, ...) are event data; `EventData` XML items and `ParameterXml` positional items
(param1..N) are added to them; empty columns (a SecurityEvent export has some 200, mostly empty) are
dropped. The XML is read with a bounded regex, never an XML parser (no entities, no DTD).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from exhunt import safe_yaml

MAP_FILE = Path(__file__).parent / "event_maps" / "sentinel.yaml"
MAX_XML_CHARS = 1 << 20
MAX_XML_ITEMS = 1024
_DATA = re.compile(r"<Data\s+Name\s*=\s*[\"']([^\"'<>]{1,256})[\"']\s*(?:/>|>([^<]*)</Data>)", re.I)
_PARAM = re.compile(r"<Param>([^<]*)</Param>|<Param\s*/>", re.I)
_LEAF = re.compile(r"<([A-Za-z_][\w.-]{0,127})(?:\s[^<>]{0,512})?>([^<]*)</\1\s*>")


@dataclass(frozen=True)
class SentinelMap:
    detect_all: tuple[str, ...]
    detect_any: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]
    xml_data: tuple[str, ...]
    xml_params: tuple[str, ...]
    not_data: frozenset[str]


@cache
def sentinel_map() -> SentinelMap:
    doc = safe_yaml.load(safe_yaml.read_text(MAP_FILE))
    return SentinelMap(
        tuple(doc["detect_all"]),
        tuple(doc["detect_any"]),
        {k: tuple(v) for k, v in doc["columns"].items()},
        tuple(doc.get("xml_data") or ()),
        tuple(doc.get("xml_params") or ()),
        frozenset(doc.get("not_data") or ()),
    )


@lru_cache(maxsize=256)
def is_sentinel_shape(keys: tuple[str, ...]) -> bool:
    """Whether an object with these top-level keys is a Sentinel `Event` row; the objects of one
    export share their keys, so this is worked out once per set of them."""
    m, present = sentinel_map(), set(keys)
    return all(k in present for k in m.detect_all) and any(k in present for k in m.detect_any)


def xml_items(text: str) -> dict[str, str]:
    """`<Data Name="X">v</Data>` items of an EventData XML string, or the leaf elements of a UserData
    block (`<UserData><LogFileCleared><SubjectUserName>v</SubjectUserName>...`), entities decoded."""
    text = text[:MAX_XML_CHARS]
    out: dict[str, str] = {}
    for i, m in enumerate(_DATA.finditer(text)):
        if i >= MAX_XML_ITEMS:
            break
        out.setdefault(m.group(1), html.unescape(m.group(2) or ""))
    start = text.find("<UserData")
    if start >= 0:
        for i, m in enumerate(_LEAF.finditer(text, start)):
            if i >= MAX_XML_ITEMS:
                break
            out.setdefault(m.group(1), html.unescape(m.group(2)))
    return out


def xml_params(text: str) -> dict[str, str]:
    """Positional `<Param>` items as param1..N."""
    out: dict[str, str] = {}
    for i, m in enumerate(_PARAM.finditer(text[:MAX_XML_CHARS])):
        if i >= MAX_XML_ITEMS:
            break
        out[f"param{i + 1}"] = html.unescape(m.group(1) or "")
    return out


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """One Sentinel row as {ts, computer, event_id, channel, provider, level, message, data}."""
    m = sentinel_map()
    out: dict[str, Any] = {}
    for target, names in m.columns.items():
        out[target] = None
        for n in names:
            v = obj.get(n)
            if v is not None and v != "":
                out[target] = v
                break
    data: dict[str, str] = {}
    for name in m.xml_data:
        if isinstance(obj.get(name), str):
            data.update(xml_items(obj[name]))
    for name in m.xml_params:
        if isinstance(obj.get(name), str):
            for k, v in xml_params(obj[name]).items():
                data.setdefault(k, v)
    not_data = m.not_data
    for key, value in obj.items():  # a SecurityEvent row has some 200 columns, most of them empty
        if value is None or value == "" or key in not_data:
            continue
        if isinstance(value, str):
            data.setdefault(key, value)
        elif not isinstance(value, (dict, list)):
            text = str(value)
            if text:
                data.setdefault(key, text)
    out["data"] = data
    return out
