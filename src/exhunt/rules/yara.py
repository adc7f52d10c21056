"""File-content rules run with yara-x: exhunt's built-in web-shell rules plus the user's `--yara`.

Only files where web shells live (script extensions, web folders) are read, up to
`CONTENT_LIMIT`; larger ones are hashed and reported as skipped. Matches are stored on the artifact
as `namespace:rule` names, so ordinary YAML rules (`field: yara`) turn them into findings.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yara_x

from exhunt.errors import RuleError

CONTENT_LIMIT = 8 << 20
SCRIPT_EXTENSIONS = (".aspx", ".ashx", ".asp", ".asmx", ".asax", ".config", ".cshtml", ".js", ".ps1", ".bat", ".vbs")
WEB_FOLDERS = ("\\inetpub\\", "\\frontend\\httpproxy\\", "\\clientaccess\\")


def wants_content(win_path: str | None, name: str) -> bool:
    """Is this a file whose content the web-shell rules should read?"""
    low = name.lower()
    if low.endswith(SCRIPT_EXTENSIONS[:5]):
        return True
    return bool(win_path) and any(f in win_path.lower() for f in WEB_FOLDERS) and low.endswith(SCRIPT_EXTENSIONS)


def compile_rules(user_paths: list[Path] | None = None) -> yara_x.Rules:
    """Built-in rules in namespace `exhunt`, the user's in namespace `user`. Bad files raise RuleError."""
    compiler = yara_x.Compiler()
    compiler.new_namespace("exhunt")
    root = resources.files("exhunt.rules") / "builtin" / "content"
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yar"):
            _add(compiler, entry.read_text(encoding="utf-8"), str(entry))
    files: list[Path] = []
    for p in user_paths or []:
        if not p.exists():
            raise RuleError(str(p), "no such YARA file or folder")
        files.extend(sorted(x for x in p.rglob("*") if x.suffix.lower() in (".yar", ".yara")) if p.is_dir() else [p])
    if files:
        compiler.new_namespace("user")
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(str(f), f"cannot read: {exc}") from None
        _add(compiler, text, str(f))
    return compiler.build()


def _add(compiler: yara_x.Compiler, text: str, origin: str) -> None:
    try:
        compiler.add_source(text, origin)
    except yara_x.CompileError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "compile error")
        where = next((ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("-->")), "")
        raise RuleError(origin, f"invalid YARA: {first} {where}".strip()) from None


def match(rules: yara_x.Rules, data: bytes) -> list[str]:
    """Names (`namespace:rule`) of the rules that match `data`; a scan timeout yields none."""
    scanner = yara_x.Scanner(rules)
    scanner.set_timeout(10)
    try:
        results = scanner.scan(data)
    except (yara_x.TimeoutError, yara_x.ScanError):
        return []
    return [f"{m.namespace}:{m.identifier}" for m in results.matching_rules]
