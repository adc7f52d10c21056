"""Which literals a Sigma condition needs: the literal gate's set (see `literal_gate`).

Read from a rule's condition tree after its pipeline: the rule can only hold on a row where at least
one (field, literal) pair of the set is a substring of the lowered field. A condition this cannot
reason about (NOT, a regex, a number, a keyword search, a case-sensitive value) gives no set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.types import SigmaCasedString, SigmaExpansion, SigmaString

from exhunt.rules.literal_gate import Need


def needs(trees: Iterable[Any]) -> Need | None:
    """The necessary (field, literal) set of a rule whose conditions are `trees` (ORed), or None."""
    out: set[tuple[str, str]] = set()
    for tree in trees:
        got = _need(tree)
        if got is None:
            return None
        out |= got
    return tuple(sorted(out)) or None


def _need(node: Any) -> frozenset[tuple[str, str]] | None:
    if isinstance(node, ConditionAND):
        options = [n for n in (_need(a) for a in node.args) if n]
        # any one child's set is necessary: take the one with the fewest, longest literals
        return min(options, key=lambda n: (len(n), -min(len(lit) for _, lit in n)), default=None)
    if isinstance(node, ConditionOR):
        return _every([_need(a) for a in node.args])
    if isinstance(node, ConditionNOT):
        return None
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _leaf(node.field, node.value)
    return None  # keywords, identifiers left unresolved, anything new


def _every(parts: list[frozenset[tuple[str, str]] | None]) -> frozenset[tuple[str, str]] | None:
    """The set of alternatives: their union, or None when one of them has none."""
    return None if not parts or any(not p for p in parts) else frozenset().union(*parts)  # type: ignore[arg-type]


def _leaf(field: str | None, value: Any) -> frozenset[tuple[str, str]] | None:
    if not field or field.startswith("@"):
        return None
    if isinstance(value, SigmaExpansion):
        return _every([_leaf(field, v) for v in value.values])
    if not isinstance(value, SigmaString) or isinstance(value, SigmaCasedString):
        return None
    pieces: list[str] = []
    current = ""
    for part in value.s:
        if isinstance(part, str):
            current += part
        else:  # a wildcard or placeholder ends a literal run
            pieces.append(current)
            current = ""
    pieces.append(current)
    # ASCII only: its lowering is the same in Python and DuckDB, and the same piece by piece
    usable = [p.lower() for p in pieces if p and p.isascii() and "\x00" not in p]
    return frozenset({(field, max(usable, key=len))}) if usable else None
