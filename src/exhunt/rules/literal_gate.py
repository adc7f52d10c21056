"""A literal gate for generated event rules: skip, without running it, a rule that cannot match.

Most Sigma rules need some text to be present: `Image|endswith: '\\rundll32.exe'` cannot hold unless
the lowered Image contains `\\rundll32.exe`: the rule can only hold on a row where at least one
(field, literal) pair of the set is a substring of the lowered field (`sigma_needs` reads the sets
from the rules' condition trees). At run time `possible` finds,
with one Aho-Corasick pass per field over the distinct values of the shared field view, which
literals occur at all; a rule none of whose literals occurs matches nothing and is not run.
A condition the gate cannot reason about (NOT, a regex, a number, a keyword search, a case-sensitive
value) gives no set, and its rule is always run: the gate only ever skips work, never a hit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import chain

import ahocorasick

Need = tuple[tuple[str, str], ...]  # (field, lowered literal): at least one is in the row
TEXT_PER_PASS = 1 << 20  # characters searched before the found literals are dropped from the automaton


def possible(values_of: Callable[[str], Iterable[str] | None], needs_of: Sequence[Need | None]) -> list[bool]:
    """Which rules may match: those with no set, and those one of whose literals occurs in the
    distinct values of its field. `values_of(field)` gives those values (lowered, as the SQL
    compares them), or None when the view has no such column (then the rule is run)."""
    by_field: dict[str, set[str]] = {}
    for need in needs_of:
        for field, lit in need or ():
            by_field.setdefault(field, set()).add(lit)
    present: dict[str, set[str] | None] = {}
    for field, lits in by_field.items():
        values = values_of(field)
        present[field] = None if values is None else _found(lits, values)
    out = []
    for need in needs_of:
        if not need:
            out.append(True)
            continue
        out.append(any(present[f] is None or lit in present[f] for f, lit in need))  # type: ignore[operator]
    return out


def _found(lits: set[str], values: Iterable[str]) -> set[str]:
    """The literals that occur in any of the values (overlapping matches count). The values are
    searched about a MiB at a time; literals already found leave the automaton, so the common ones
    stop being reported over and over."""
    left, found = set(lits), set()
    auto = None
    batch: list[str] = []
    size = 0
    end = object()
    for v in chain(values, [end]):  # at the end, search what is left
        if v is None:
            continue
        if v is not end:
            batch.append(v)  # type: ignore[arg-type]
            size += len(v) + 1  # type: ignore[arg-type]
            if size < TEXT_PER_PASS:
                continue
        if not batch:
            break
        if auto is None or len(left) < len(auto):  # (re)built only when literals were found
            auto = ahocorasick.Automaton()
            for lit in left:
                auto.add_word(lit, lit)
            auto.make_automaton()
        found.update(lit for _, lit in auto.iter("\x00".join(batch)))  # no literal holds a NUL
        left -= found
        batch, size = [], 0
        if not left:
            break
    return found
