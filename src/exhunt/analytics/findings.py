"""The analytics' verdicts (a mailbox taken, a mailbox read abnormally) as findings the verdict weighs
like any rule's: a theft that only the analytics can see must never end in NO EVIDENCE FOUND."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from exhunt.result import Evidence, Finding
from exhunt.rules.model import Rule


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    when = datetime.fromisoformat(str(value).removesuffix("Z"))
    return when.replace(tzinfo=None) if when.tzinfo is None else when.astimezone(UTC).replace(tzinfo=None)


def analytics_finding(doc: dict[str, Any]) -> Finding:
    """A finding from one entry of `mailbox_access.findings` (shaped like the result's findings)."""
    rule = Rule(
        id=doc["rule"], title=doc["title"], description=doc.get("note") or doc["title"],
        severity=doc["severity"], kind=doc["kind"], source="analytics", confidence=doc.get("confidence", "medium"),
        campaign=doc.get("campaign"), cves=tuple(doc.get("cves") or ()), attack=tuple(doc.get("attack") or ()),
        origin="exhunt.analytics",
    )  # fmt: skip
    evidence = [
        Evidence(e.get("path") or "", e.get("line"), e.get("record_id"), _time(e.get("time")),
                 e.get("record") or {}, e.get("raw"))
        for e in doc.get("evidence") or []
    ]  # fmt: skip
    return Finding(
        rule, doc.get("host") or "", dict(doc.get("group") or {}), int(doc.get("count") or 0),
        _time(doc.get("first_seen")), _time(doc.get("last_seen")), doc["severity"], evidence, doc.get("note") or "",
    )  # fmt: skip
