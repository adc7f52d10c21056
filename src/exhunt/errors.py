"""The exception tree. One root; a subclass per layer. The CLI turns each into a one-line message."""

from __future__ import annotations


class ExhuntError(Exception):
    """Root of every error exhunt raises on purpose."""


class UsageError(ExhuntError):
    """The user's words are off: a bad option value, a malformed build string or URL (exit 2)."""


class InputError(ExhuntError):
    """The input as a whole cannot be read: missing path, unreadable zip (exit 2)."""


class RuleError(ExhuntError):
    """A rule, Sigma, YARA or IOC file is malformed. The message names the file and the problem."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
