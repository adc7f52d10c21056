"""File-content rules run with yara-x: exhunt's built-in web-shell rules plus the user's `--yara`.

Only files where web shells live (script extensions, web folders) are read, up to
`CONTENT_LIMIT`; larger ones are hashed and reported as skipped. Matches are stored on the artifact
as `namespace:rule` names, so ordinary YAML rules (`field: yara`) turn them into findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yara_x

from exhunt.errors import RuleError

CONTENT_LIMIT = 8 << 20
SCAN_TIMEOUT = 10  # seconds, for each rule set on one file
SCRIPT_EXTENSIONS = (".aspx", ".ashx", ".asp", ".asmx", ".asax", ".config", ".cshtml", ".js", ".ps1", ".bat", ".vbs")
WEB_FOLDERS = ("\\inetpub\\", "\\frontend\\httpproxy\\", "\\clientaccess\\")


def wants_content(win_path: str | None, name: str) -> bool:
    """Is this a file whose content the web-shell rules should read?"""
    low = name.lower()
    if low.endswith(SCRIPT_EXTENSIONS[:5]):
        return True
    return bool(win_path) and any(f in win_path.lower() for f in WEB_FOLDERS) and low.endswith(SCRIPT_EXTENSIONS)


@dataclass(frozen=True)
class ContentRules:
    """The built-in rules and the user's, compiled apart: a user rule that runs into the timeout
    costs only the user rules' matches on that file, never the built-in web-shell matches."""

    builtin: yara_x.Rules
    user: yara_x.Rules | None = None
    user_files: tuple[str, ...] = ()


@dataclass
class ContentMatch:
    names: list[str] = field(default_factory=list)  # `namespace:rule`
    problems: list[str] = field(default_factory=list)  # for the artifact's errors


def compile_rules(user_paths: list[Path] | None = None) -> ContentRules:
    """Built-in rules in namespace `exhunt`, the user's in namespace `user`. Bad files raise RuleError."""
    compiler = yara_x.Compiler()
    compiler.new_namespace("exhunt")
    root = resources.files("exhunt.rules") / "builtin" / "content"
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yar"):
            _add(compiler, entry.read_text(encoding="utf-8"), str(entry))
    builtin = compiler.build()
    files: list[Path] = []
    for p in user_paths or []:
        if not p.exists():
            raise RuleError(str(p), "no such YARA file or folder")
        files.extend(sorted(x for x in p.rglob("*") if x.suffix.lower() in (".yar", ".yara")) if p.is_dir() else [p])
    if not files:
        return ContentRules(builtin)
    compiler = yara_x.Compiler()
    compiler.new_namespace("user")
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(str(f), f"cannot read: {exc}") from None
        _add(compiler, text, str(f))
    return ContentRules(builtin, compiler.build(), tuple(map(str, files)))


def _add(compiler: yara_x.Compiler, text: str, origin: str) -> None:
    try:
        compiler.add_source(text, origin)
    except yara_x.CompileError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "compile error")
        where = next((ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("-->")), "")
        raise RuleError(origin, f"invalid YARA: {first} {where}".strip()) from None


def match(rules: ContentRules, data: bytes) -> ContentMatch:
    """The rules that match `data`, built-in and user rules scanned apart; a timeout or scan error
    is a problem of that file, named, and never drops the other set's matches."""
    out = ContentMatch()
    sets = [("built-in content rules", rules.builtin)]
    if rules.user is not None:
        sets.append((f"user YARA rules ({', '.join(rules.user_files)[:200]})", rules.user))
    for label, compiled in sets:
        scanner = yara_x.Scanner(compiled)
        scanner.set_timeout(SCAN_TIMEOUT)
        try:
            results = scanner.scan(data)
        except yara_x.TimeoutError:
            out.problems.append(f"{label} timed out after {SCAN_TIMEOUT} s on this file: their matches are unknown")
            continue
        except yara_x.ScanError as exc:
            out.problems.append(f"{label} failed on this file: {str(exc).strip()[:200]}")
            continue
        out.names.extend(f"{m.namespace}:{m.identifier}" for m in results.matching_rules)
    return out
