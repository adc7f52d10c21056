"""Quoting for SQL text built from names and values exhunt did not choose (log field names, paths)."""

from __future__ import annotations


def quote(name: str) -> str:
    """A SQL identifier for any name (log field names are the writer's, or an attacker's, choice)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal for any text."""
    return "'" + text.replace("'", "''") + "'"
