"""Rules as data: one YAML file per rule, loaded strictly into a `Rule`.

A rule names a log family (`source`), a condition tree (`where`) over that family's fields, and what
a hit means (severity, confidence, kind, CVEs, ATT&CK). Unknown keys, missing keys, bad values and
duplicate ids are errors that name the file. See `rules/builtin/*.yaml` for examples and
`exhunt rules show ID` for one rule.

Condition tree: a mapping with one of `all: [..]`, `any: [..]`, `none: [..]`, `not: {..}`, or a leaf
`{field: NAME, <op>: VALUE}` with ops `equals`, `like` (glob: `*` and `?`), `contains`, `startswith`,
`endswith`, `regex`, `gte`, `lte`, `exists`, and optional `case_sensitive: true`. A list VALUE means
"any of". Fields are the log's own column names; events use `data.<Name>` for EventData fields.
Union sources use only their normalised fields (`exhunt.families.UNIONS`) and run on every member at
once: `source: web` on every web family (IIS front and back end, every HttpProxy protocol log),
`source: cmdlet` on the MSExchange Management events and the Rps_Cmdlet log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from exhunt import safe_yaml
from exhunt.errors import RuleError
from exhunt.families import RULE_SOURCES, UNIONS, source_families
from exhunt.user_cache import parsed_once

SEVERITIES = ("info", "low", "medium", "high", "critical")
KINDS = ("exploitation", "webshell", "post-exploitation", "context", "scanning", "indicator")
SOURCES = RULE_SOURCES  # the families a rule can name (exhunt.families)
OPS = ("equals", "like", "contains", "startswith", "endswith", "regex", "gte", "lte", "exists")
_KEYS = {
    "id", "title", "description", "severity", "confidence", "kind", "campaign", "cves", "attack", "source",
    "where", "group_by", "false_positives", "references", "escalate_to", "python", "reads",
}  # fmt: skip
_REQUIRED = {"id", "title", "description", "severity", "kind", "source"}


@dataclass(frozen=True)
class FieldView:
    """A generated rule's view of its table: the rows of some sources (SQL over alias `s`), the
    fields it reads, lowered and as they are, and its condition over them. Rules with the same
    sources share one view, so each field is extracted once for all of them."""

    sources: str
    lowered: tuple[str, ...]
    plain: tuple[str, ...]
    where: str  # over alias `s`; its `?` are the rule's sql_params
    needs: tuple[tuple[str, str], ...] | None = None  # (field, literal) pairs one of which a hit holds (literal_gate)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    description: str
    severity: str
    kind: str
    source: str
    where: dict[str, Any] | None = None
    confidence: str = "medium"
    campaign: str | None = None
    cves: tuple[str, ...] = ()
    attack: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    false_positives: str = ""
    references: tuple[str, ...] = ()
    escalate_to: str | None = None  # context rules: severity when the host shows exploitation
    python: str | None = None  # "module:function" for logic that cannot be data
    reads: tuple[str, ...] = ()  # python rules: the fields their logic reads (else every column is kept)
    sql: str | None = None  # a generated SQL condition over table alias `t` (Sigma backend), never from YAML
    sql_params: tuple[object, ...] = ()
    view: FieldView | None = None  # generated rules on events: the shared extraction their `sql` also does
    # a generated union rule (Sigma on web logs): (family, SQL condition over `t`, its params) per family
    by_family: tuple[tuple[str, str, tuple[object, ...]], ...] = ()
    origin: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "description": self.description, "severity": self.severity,
            "confidence": self.confidence, "kind": self.kind, "campaign": self.campaign, "cves": list(self.cves),
            "attack": list(self.attack), "source": self.source, "where": self.where, "group_by": list(self.group_by),
            "false_positives": self.false_positives, "references": list(self.references),
            "escalate_to": self.escalate_to, "python": self.python, "reads": list(self.reads),
            "runs_on": self.runs_on(),
        }  # fmt: skip

    def runs_on(self) -> list[str]:
        """The log families this rule reads: those a generated rule was compiled for, else its source's."""
        if self.by_family:
            return [name for name, _, _ in self.by_family]
        return [f.name for f in source_families(self.source)] if self.source in RULE_SOURCES else []


class _StrictLoader(safe_yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_condition(cond: Any, where: str) -> None:
    if not isinstance(cond, dict) or not cond:
        raise ValueError(f"{where}: a condition must be a non-empty mapping")
    groups = {"all", "any", "none"} & cond.keys()
    if groups or "not" in cond:
        if len(cond) != 1:
            raise ValueError(f"{where}: 'all'/'any'/'none'/'not' must stand alone, got {sorted(cond)}")
        key = next(iter(cond))
        if key == "not":
            _check_condition(cond["not"], f"{where}.not")
            return
        if not isinstance(cond[key], list) or not cond[key]:
            raise ValueError(f"{where}.{key}: needs a non-empty list")
        for i, sub in enumerate(cond[key]):
            _check_condition(sub, f"{where}.{key}[{i}]")
        return
    if "field" not in cond:
        raise ValueError(f"{where}: a leaf needs 'field'")
    ops = set(cond) - {"field", "case_sensitive"}
    unknown = ops - set(OPS)
    if unknown:
        raise ValueError(f"{where}: unknown operator(s) {sorted(unknown)}; known: {', '.join(OPS)}")
    if not ops:
        raise ValueError(f"{where}: a leaf needs an operator ({', '.join(OPS)})")


def _leaf_fields(cond: Any) -> list[str]:
    """Every field a condition tree names."""
    if isinstance(cond, dict):
        own = [str(cond["field"])] if "field" in cond else []
        return own + [f for v in cond.values() for f in _leaf_fields(v)]
    if isinstance(cond, list):
        return [f for item in cond for f in _leaf_fields(item)]
    return []


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def rule_from_dict(doc: Any, origin: str) -> Rule:
    """Validate one rule document; raise RuleError naming `origin` on any problem."""
    if not isinstance(doc, dict):
        raise RuleError(origin, "a rule file must hold one mapping")
    unknown = set(doc) - _KEYS
    if unknown:
        raise RuleError(origin, f"unknown key(s): {', '.join(sorted(unknown))}")
    missing = _REQUIRED - set(doc)
    if missing:
        raise RuleError(origin, f"missing key(s): {', '.join(sorted(missing))}")
    if doc["severity"] not in SEVERITIES:
        raise RuleError(origin, f"severity must be one of {', '.join(SEVERITIES)}")
    if doc.get("escalate_to") not in (None, *SEVERITIES):
        raise RuleError(origin, f"escalate_to must be one of {', '.join(SEVERITIES)}")
    if doc["kind"] not in KINDS:
        raise RuleError(origin, f"kind must be one of {', '.join(KINDS)}")
    if doc["source"] not in SOURCES:
        raise RuleError(origin, f"source must be one of {', '.join(SOURCES)}")
    if "where" not in doc and "python" not in doc:
        raise RuleError(origin, "a rule needs 'where' or 'python'")
    if "python" in doc:
        from exhunt.rules import logic

        module, _, name = str(doc["python"]).partition(":")
        if module != "exhunt.rules.logic" or not callable(getattr(logic, name, None)):
            raise RuleError(origin, f"python: {doc['python']!r} is not a function of exhunt.rules.logic")
    if "reads" in doc and "python" not in doc:
        raise RuleError(origin, "'reads' names what python logic reads; a 'where' rule's fields are its own")
    try:
        if "where" in doc:
            _check_condition(doc["where"], "where")
    except ValueError as exc:
        raise RuleError(origin, str(exc)) from None
    if doc["source"] in UNIONS:
        union, fields = doc["source"], UNIONS[doc["source"]]
        if "python" in doc:
            raise RuleError(origin, f"a source {union} rule needs 'where' (python logic reads one family's table)")
        named = set(_leaf_fields(doc.get("where"))) | set(_as_list(doc.get("group_by")))
        foreign = sorted(named - set(fields))
        if foreign:
            raise RuleError(
                origin, f"source {union} takes only the normalised {union} fields ({', '.join(fields)}), not {foreign}"
            )

    def tup(key: str) -> tuple[str, ...]:
        value = doc.get(key) or ()
        if isinstance(value, str):
            value = [value]
        return tuple(str(v) for v in value)

    return Rule(
        id=str(doc["id"]), title=str(doc["title"]), description=str(doc["description"]).strip(),
        severity=doc["severity"], kind=doc["kind"], source=doc["source"], where=doc.get("where"),
        confidence=str(doc.get("confidence", "medium")), campaign=doc.get("campaign"), cves=tup("cves"),
        attack=tup("attack"), group_by=tup("group_by"), false_positives=str(doc.get("false_positives", "")).strip(),
        references=tup("references"), escalate_to=doc.get("escalate_to"), python=doc.get("python"), reads=tup("reads"),
        origin=origin,
    )  # fmt: skip


def load_rule_file(path: Path) -> Rule:
    try:
        text = safe_yaml.read_text(path)
        doc = _parsed(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(str(path), f"cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RuleError(str(path), f"invalid YAML: {problem}{where}") from None
    return rule_from_dict(doc, str(path))


def _parsed(text: str) -> Any:
    """A rule file's YAML document, parsed once per content: the strict pure-Python loader took 0.7 s
    for the built-in rules on every scan; a cached document loads in milliseconds, and is validated
    as a fresh one is."""
    return parsed_once(
        text,
        "rule-files",
        lambda t: safe_yaml.load(t, loader=_StrictLoader),
        (Path(safe_yaml.__file__), Path(__file__)),
    )


def load_rules(paths: list[Path] | None = None) -> list[Rule]:
    """The built-in rules, or the rule files in `paths` (files or folders). Ids must be unique."""
    files: list[Path] = []
    if paths is None:
        root = resources.files("exhunt.rules") / "builtin"
        files = sorted(Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml"))
    else:
        for p in paths:
            files.extend(sorted(p.rglob("*.y*ml")) if p.is_dir() else [p])
    rules: dict[str, Rule] = {}
    for f in files:
        rule = load_rule_file(f)
        if rule.id in rules:
            raise RuleError(str(f), f"duplicate rule id {rule.id!r} (also in {rules[rule.id].origin})")
        rules[rule.id] = rule
    return list(rules.values())
