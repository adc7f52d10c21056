"""Event fields from the rendered `Message` text, for exports that kept nothing else.

Sentinel/Log Analytics, NXLog, some Winlogbeat set-ups and public datasets often keep only the
rendered message of an event. `fields_from_message` turns that text back into the EventData fields
the EVTX reader yields (same names, raw values where the rendering differs), following the declared
layouts in `event_maps/message-layouts.yaml`:

- Security/System events: labelled lines under section headings (`New Logon:` / `Account Name:` is
  TargetUserName, `Subject:` / `Account Name:` is SubjectUserName), multi-line or joined into one line.
- Sysmon: `Key: value` lines, the key being the field name.
- MSExchange CmdletLogs 1/6: `Cmdlet succeeded. Cmdlet NAME, parameters PARAMS.` (param1, param2) in
  the `-Name "value"` and the `{Name=value}` renderings, and a `Caller:` line (param3) when present.

Work per message is bounded (the first `MAX_MESSAGE_CHARS` characters, `MAX_LABELS` labels, regexes
of literal alternatives only). A label that repeats (a value that imitates a field line) keeps its
first occurrence and marks the result ambiguous. Parsing never raises on content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from exhunt import safe_yaml

MAX_MESSAGE_CHARS = 256 * 1024
MAX_LABELS = 4096
PARSED_FROM = "_parsed_from"  # data key: where the fields came from ("Message")
AMBIGUOUS = "_message_ambiguous"  # data key: labels that occurred more than once
TRUNCATED = "_message_truncated"  # data key: the message was longer than MAX_MESSAGE_CHARS
LAYOUTS_FILE = Path(__file__).parent / "event_maps" / "message-layouts.yaml"
_DEFAULT_CHANNELS = {
    "microsoft-windows-security-auditing": "security",
    "microsoft-windows-eventlog": "security",
    "service control manager": "system",
    "microsoft-windows-terminalservices-remoteconnectionmanager": (
        "microsoft-windows-terminalservices-remoteconnectionmanager/operational"
    ),
}
SYSMON_CHANNEL = "microsoft-windows-sysmon/operational"


class Shapes:
    """Message shapes a layout has met more than once, each as one regex, so that a message of a known
    shape is read in one match instead of line by line.

    A shape is the message's text with each field value's first line as a group: the labels, the
    lines between and whether each value is blank are fixed, so a message that matches tokenises and
    plans exactly as the line-by-line reader would (groups never span a line). Hostile or ambiguous
    messages (a repeated label) are never learnt, nor messages longer than `MAX_CHARS` (the memory and
    the regex stay small whatever a hostile log repeats). At most `KEEP` shapes per layout, the
    latest hit first; shapes met once are remembered by hash only, `SEEN` at a time.
    """

    KEEP = 8
    SEEN = 512
    MAX_CHARS = 16 * 1024

    def __init__(self) -> None:
        # (regex, fields): a field is (group, name, text after the group up to the next label's line,
        # trailer to cut or "", rendered -> raw values or None)
        self.known: list[tuple[re.Pattern[str], list[tuple[int, str, str, str, dict[str, str] | None]]]] = []
        self.seen: dict[int, int] = {}  # hash of a shape's pattern -> times met

    def match(self, text: str) -> dict[str, str] | None:
        known = self.known
        for k, (regex, fields) in enumerate(known):
            m = regex.fullmatch(text)
            if m is None:
                continue
            if k:
                self.known = [known[k]] + [x for x in known if x is not known[k]]
            out: dict[str, str] = {}
            for group, name, tail, trailer, rendered in fields:
                value = m[group] + tail if tail else m[group]
                if trailer:
                    cut = value.lower().find(trailer)
                    if cut >= 0:
                        value = value[:cut]
                value = value.strip()
                out[name] = rendered.get(value.lower(), value) if rendered else value
            return out
        return None

    def learn(self, layout: Layout, tokens: list[Token], spans: list[tuple[int, int]], plan: Plan, text: str) -> None:
        if not tokens or len(text) > self.MAX_CHARS:
            return
        pieces, pos, line_ends = [], 0, []
        for (_, _, value_start), span in zip(tokens, spans, strict=True):
            line_end = text.find("\n", value_start)
            line_end = len(text) if line_end < 0 else line_end
            pieces.append(re.escape(text[pos:value_start]))
            # a blank value stays blank (a heading stays a heading); a filled one stays filled
            pieces.append(r"([^\S\n]*)" if _blank(text, span) else r"([^\S\n]*\S[^\n]*)")
            pos = line_end
            line_ends.append(line_end)
        pieces.append(re.escape(text[pos:]))
        pattern = "".join(pieces)  # a hash collision only learns a shape one sighting early: still exact
        count = self.seen.get(hash(pattern), 0) + 1
        if len(self.seen) >= self.SEEN:
            self.seen = {}
        self.seen[hash(pattern)] = count
        if count != 2:
            return
        last, trailer = len(tokens) - 1, layout.trailer.lower()
        fields = []
        for i, name in plan:
            tail = text[line_ends[i] : spans[i][1]]
            cut = trailer if trailer and i == last else ""
            if not cut and not tail.strip():
                tail = ""  # blank: stripped off anyway
            fields.append((i + 1, name, tail, cut, layout.values.get(name)))
        self.known = [*self.known[: self.KEEP - 1], (re.compile(pattern), fields)]


@dataclass(frozen=True)
class Layout:
    """How one event's rendered text names its fields."""

    kind: str  # "labels" (Security-style sections), "sysmon", "cmdlet", "template" (one regex)
    event_id: int | None
    sections: dict[str, dict[str, str]] = field(default_factory=dict)  # heading (lower) -> label (lower) -> field
    anywhere: dict[str, str] = field(default_factory=dict)  # labels found in one section only
    aliases: dict[str, str] = field(default_factory=dict)
    trailer: str = ""
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # field -> rendered (lower) -> raw
    order: tuple[str, ...] = ()  # Sysmon field order
    joined_pattern: re.Pattern[str] | None = None  # labels anywhere after white space (one-line form)
    template: re.Pattern[str] | None = None  # kind "template": named groups are the fields
    words: frozenset[str] = frozenset()  # headings and labels (lower case; Sysmon keys as written)
    names: frozenset[str] = frozenset()  # the fields this layout yields
    shapes: Shapes = field(default_factory=lambda: Shapes(), compare=False, repr=False)  # learnt while reading


@dataclass
class _Tables:
    labels: dict[tuple[str, int], Layout]  # (provider lower, event id)
    by_channel: dict[tuple[str, int], Layout]  # (channel lower, event id), for exports without a provider
    sysmon: dict[int, Layout]
    sysmon_generic: Layout
    sysmon_providers: frozenset[str]
    cmdlet: Layout
    cmdlet_providers: frozenset[str]
    cmdlet_channels: frozenset[str]
    cmdlet_ids: frozenset[int]


def _alternation(labels: list[str]) -> str:
    return "|".join(re.escape(x) for x in sorted(set(labels), key=len, reverse=True))


def _label_layout(event_id: int, spec: dict[str, Any], like: dict[str, Any] | None) -> Layout:
    base = like or spec
    sections = {
        str(h).strip().lower(): {str(k).strip().lower(): str(v) for k, v in (labels or {}).items()}
        for h, labels in (base.get("sections") or {}).items()
    }
    seen: dict[str, list[str]] = {}
    for labels in sections.values():
        for label, name in labels.items():
            seen.setdefault(label, []).append(name)
    anywhere = {label: names[0] for label, names in seen.items() if len(set(names)) == 1}
    aliases = {str(k).lower(): str(v).lower() for k, v in (base.get("aliases") or {}).items()}
    words = [h for h in sections if h] + list(aliases) + list(seen)
    alt = _alternation(words)
    names = frozenset(f for labels in sections.values() for f in labels.values())
    return Layout(
        "labels",
        event_id,
        sections,
        anywhere,
        aliases,
        str(spec.get("trailer") or base.get("trailer") or ""),
        {
            str(f): {str(k).lower(): str(v) for k, v in m.items()}
            for f, m in (spec.get("values") or base.get("values") or {}).items()
        },
        joined_pattern=re.compile(rf"(?i)(?:^|(?<=\s))({alt})[ \t]*:"),
        words=frozenset(words),
        names=names,
    )


def _sysmon_layout(event_id: int | None, names: list[str]) -> Layout:
    if not names:  # any `Key:` at a line start
        return Layout("sysmon", event_id)
    return Layout(
        "sysmon",
        event_id,
        order=tuple(names),
        joined_pattern=re.compile(rf"(?:^|(?<=\s))({_alternation(names)}):"),
        words=frozenset(names),
        names=frozenset(names),
    )


@cache
def _tables() -> _Tables:
    doc = safe_yaml.load(safe_yaml.read_text(LAYOUTS_FILE))
    labels: dict[tuple[str, int], Layout] = {}
    by_channel: dict[tuple[str, int], Layout] = {}
    security = doc.get("security") or {}
    for event_id, spec in security.items():
        like = security.get(spec["like"]) if "like" in spec else None
        layout = _label_layout(int(event_id), spec, like)
        for provider in (like or spec).get("providers") or []:
            labels[(provider.lower(), int(event_id))] = layout
            channel = _DEFAULT_CHANNELS.get(provider.lower())
            if channel:
                by_channel[(channel, int(event_id))] = layout
    for event_id, spec in (doc.get("templates") or {}).items():
        regex = re.compile(str(spec["regex"]), re.S)
        layout = Layout("template", int(event_id), template=regex, names=frozenset(regex.groupindex))
        for provider in spec.get("providers") or []:
            labels[(provider.lower(), int(event_id))] = layout
        for channel in spec.get("channels") or []:
            by_channel[(channel.lower(), int(event_id))] = layout
    sysmon_doc = doc.get("sysmon") or {}
    sysmon = {int(k): _sysmon_layout(int(k), [str(x) for x in v]) for k, v in (sysmon_doc.get("fields") or {}).items()}
    cmdlet_doc = doc.get("cmdlet") or {}
    return _Tables(
        labels,
        by_channel,
        sysmon,
        _sysmon_layout(None, []),
        frozenset(p.lower() for p in sysmon_doc.get("providers") or []),
        Layout("cmdlet", None, names=frozenset({"param1", "param2"})),
        frozenset(p.lower() for p in cmdlet_doc.get("providers") or []),
        frozenset(c.lower() for c in cmdlet_doc.get("channels") or []),
        frozenset(int(i) for i in cmdlet_doc.get("event_ids") or []),
    )


def layout_for(channel: str | None, provider: str | None, event_id: int | None) -> Layout | None:
    """The declared layout of this event's rendered text, or None when exhunt knows none."""
    if event_id is None:
        return None
    t = _tables()
    ch, pv = (channel or "").strip().lower(), (provider or "").strip().lower()
    if pv in t.sysmon_providers or ch == SYSMON_CHANNEL:
        return t.sysmon.get(event_id, t.sysmon_generic)
    if (pv in t.cmdlet_providers or ch in t.cmdlet_channels) and event_id in t.cmdlet_ids:
        return t.cmdlet
    if pv:
        return t.labels.get((pv, event_id))
    return t.by_channel.get((ch, event_id))


_CMDLET = re.compile(
    r"(?is)^\s*Cmdlet\s+(?:succeeded|suceeded|failed)\.\s*Cmdlet\s+(?P<name>[A-Za-z][A-Za-z0-9-]{0,127})"
    r"\s*,\s*parameters\s?(?P<params>.*)"
)
_CALLER = re.compile(r"(?im)^[ \t]*Caller[ \t]*:[ \t]*(?P<caller>[^\r\n]*)")


def _parse_cmdlet(text: str) -> dict[str, str]:
    m = _CMDLET.match(text)
    if not m:
        return {}
    params = m.group("params")
    caller = _CALLER.search(params)
    out = {"param1": m.group("name")}
    if caller:
        params = params[: caller.start()]
        out["param3"] = caller.group("caller").strip()
    params = params.rstrip()
    out["param2"] = params[:-1] if params.endswith(".") else params
    return out


Token = tuple[str, int, int]  # (label as written, start of its line or match, end of `label:`)


def _line_tokens(layout: Layout, text: str) -> list[Token]:
    """Labels that begin a line: `  Label:` with a known label (any `Key:` for a Sysmon event whose
    fields exhunt does not list). Labels of label layouts are given in lower case."""
    out: list[Token] = []
    pos = 0
    fold = layout.kind != "sysmon"
    words = layout.words
    for line in text.split("\n"):
        start, pos = pos, pos + len(line) + 1
        colon = line.find(":", 0, 256)
        if colon <= 0:
            continue
        label = line[:colon].strip(" \t")
        if fold:
            label = label.lower()
        if words:
            if label not in words:
                continue
        elif not (label.isascii() and label.isalnum() and label[0].isalpha()):
            continue
        out.append((label, start, start + colon + 1))
        if len(out) >= MAX_LABELS:
            break
    return out


def _joined_tokens(pattern: re.Pattern[str], text: str) -> list[Token]:
    out: list[Token] = []
    for m in pattern.finditer(text):
        out.append((m.group(1), m.start(), m.end()))
        if len(out) >= MAX_LABELS:
            break
    return out


def _parse_labels(layout: Layout, text: str) -> tuple[dict[str, str], list[str]]:
    line_form = "\n" in text or layout.joined_pattern is None
    if line_form:
        known = layout.shapes.match(text)
        if known is not None:
            return known, []
        raw = _line_tokens(layout, text)
    else:
        raw = _joined_tokens(layout.joined_pattern, text)  # type: ignore[arg-type]
    repeated: list[str] = []
    tokens = raw
    if layout.order:
        tokens = _in_order(layout.order, raw)
        if len(tokens) != len(raw):
            repeated = _repeats(raw)
    spans = _spans(tokens, text)
    plan, twice = _plan(layout, tokens, spans, text)
    repeated += twice
    if line_form and not repeated and len(raw) < MAX_LABELS:
        layout.shapes.learn(layout, tokens, spans, plan, text)
    return _values(layout, plan, spans, text), repeated


def _spans(tokens: list[Token], text: str) -> list[tuple[int, int]]:
    """Where each token's value lies: from its `label:` to the start of the next token."""
    ends = [t[1] for t in tokens[1:]] + [len(text)]
    return [(t[2], end) for t, end in zip(tokens, ends, strict=True)]


Plan = list[tuple[int, str]]  # (token index, field name): the tokens whose value fills a field


def _plan(layout: Layout, tokens: list[Token], spans: list[tuple[int, int]], text: str) -> tuple[Plan, list[str]]:
    """Which field each token fills (headings switch the section; the first of a repeated field
    stands) and the fields that repeat. Depends only on the labels and on which values are blank."""
    plan: Plan = []
    repeated: list[str] = []
    seen: set[str] = set()
    sysmon = layout.kind == "sysmon"
    sections, anywhere = layout.sections, layout.anywhere
    current: dict[str, str] = sections.get("", {})
    for i, (label, _, _) in enumerate(tokens):
        if sysmon:
            name: str | None = label
        else:
            label = label.lower()  # the one-line form keeps the text's case
            heading = layout.aliases.get(label, label)
            if heading in sections and heading and _blank(text, spans[i]):
                current = sections[heading]
                continue
            name = current.get(label) or anywhere.get(label)
        if not name:
            continue
        if name in seen:
            repeated.append(name)
            continue
        seen.add(name)
        plan.append((i, name))
    return plan, repeated


def _blank(text: str, span: tuple[int, int]) -> bool:
    return not text[span[0] : span[1]].strip()


def _values(layout: Layout, plan: Plan, spans: list[tuple[int, int]], text: str) -> dict[str, str]:
    """The planned fields' values: stripped, the template's explanation cut off the last one, rendered
    values turned back into raw ones."""
    out: dict[str, str] = {}
    trailer = layout.trailer.lower()
    last = len(spans) - 1
    values = layout.values
    for i, name in plan:
        value = text[spans[i][0] : spans[i][1]]
        if trailer and i == last:  # the template's explanation follows the last field
            cut = value.lower().find(trailer)
            if cut >= 0:
                value = value[:cut]
        value = value.strip()
        out[name] = values[name].get(value.lower(), value) if name in values else value
    return out


def _repeats(tokens: list[Token]) -> list[str]:
    seen: set[str] = set()
    out = []
    for label, _, _ in tokens:
        if label in seen:
            out.append(label)
        seen.add(label)
    return out


def _in_order(order: tuple[str, ...], matches: list[Token]) -> list[Token]:
    """Of a key that occurs more than once, keep the occurrence that sits in schema order between its
    neighbours; the others are text of the value they stand in (a command line imitating a line)."""
    rank = {name: i for i, name in enumerate(order)}
    names = [t[0] for t in matches]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    if all(c == 1 for c in counts.values()):
        return matches
    keep: list[Token] = []
    chosen: set[str] = set()
    for i, m in enumerate(matches):
        name = names[i]
        if counts[name] == 1:
            keep.append(m)
            continue
        before = rank[names[i - 1]] if i > 0 else -1
        after = rank[names[i + 1]] if i + 1 < len(names) else len(order)
        if name not in chosen and before < rank[name] < after:
            chosen.add(name)
            keep.append(m)
    for name in counts:  # no occurrence fits: the first one stands
        if counts[name] > 1 and name not in chosen:
            keep.append(next(t for t in matches if t[0] == name))
    keep.sort(key=lambda t: t[1])
    return keep


def fields_from_message(layout: Layout, message: str) -> dict[str, str]:
    """The EventData fields that `message` renders, as the EVTX reader names them, plus provenance
    keys (`_parsed_from`, and `_message_ambiguous` / `_message_truncated` when they apply)."""
    text = message[:MAX_MESSAGE_CHARS]
    try:
        if layout.kind == "cmdlet":
            out, repeated = _parse_cmdlet(text), []
        elif layout.template is not None:
            m = layout.template.match(text)
            # the text's own line ends around a field are the template's, not the field's
            groups = m.groupdict().items() if m else ()
            out, repeated = {k: v.rstrip("\r\n") for k, v in groups if v is not None}, []
        else:
            out, repeated = _parse_labels(layout, text)
    except (re.error, ValueError, IndexError):  # defensive: content must never stop the reader
        return {}
    if not out:
        return {}
    out[PARSED_FROM] = "Message"
    if repeated:
        out[AMBIGUOUS] = ",".join(sorted(set(repeated)))
    if len(message) > MAX_MESSAGE_CHARS:
        out[TRUNCATED] = f"parsed the first {MAX_MESSAGE_CHARS} of {len(message)} characters"
    return out


def _filled(data: dict[str, str], wanted: frozenset[str], enough: int) -> bool:
    """At least `enough` of the `wanted` fields have a value in `data`."""
    found = 0
    for name, value in data.items():
        if value and name in wanted:
            found += 1
            if found >= enough:
                return True
    return False


def fill_from_message(
    data: dict[str, str], channel: str | None, provider: str | None, event_id: int | None, message: Any
) -> bool:
    """Add the fields parsed from `message` to `data` when the export kept none of them (structured
    fields always win); True when it did."""
    if not isinstance(message, str) or not message or message.isspace():
        return False
    layout = layout_for(channel, provider, event_id)
    if layout is None:
        return False
    wanted = layout.names
    # structured already when two of its fields have values (one may be an agent's own key: NXLog
    # adds AccountName/Domain of the event's user to every record)
    if data and wanted and _filled(data, wanted, min(2, len(wanted))):
        return False
    if not wanted and any(k[:1].isupper() for k in data):  # generic Sysmon: structured keys present
        return False
    parsed = fields_from_message(layout, message)
    if not parsed:
        return False
    for key, value in parsed.items():
        data.setdefault(key, value)
    return True
