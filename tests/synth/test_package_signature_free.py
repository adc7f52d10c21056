"""The installed package carries no web-shell signature: the synthetic generator ships inside it.

The wheel is built from a copy of the source tree, installed with pip into a fresh venv (pip also
writes the .pyc files), and every installed file of the package is checked two ways: with the
built-in YARA content rules directly, and through a real scan in which each installed file sits in
a web folder as an .aspx page, so the YAML content rules (file-webshell-content ...) see them too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from exhunt.rules.model import load_rules
from exhunt.rules.yara import compile_rules, match
from exhunt.scan import ScanOptions, scan

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": ""}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `exhunt` folder as pip installs it from the built wheel into a fresh venv."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src-copy"  # building in place would leave build/ and egg-info in the worktree
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    wheels = base / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(wheels)], cwd=src)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("exhunt-*.whl")
    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    inst = _run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)])
    assert inst.returncode == 0, inst.stderr[-2000:]
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    pkg = Path(purelib) / "exhunt"
    assert (pkg / "synth" / "files.py").is_file() and (pkg / "rules" / "builtin" / "content").is_dir()
    assert list(pkg.rglob("*.pyc")), "pip wrote no bytecode: the compiled constants would go unchecked"
    assert Path(sysconfig.get_paths()["purelib"]) != Path(purelib), "not a fresh venv"
    return pkg


def test_no_installed_file_matches_the_builtin_yara_rules(installed_package: Path):
    rules = compile_rules()
    files = [p for p in sorted(installed_package.rglob("*")) if p.is_file()]
    assert len(files) > 100, len(files)
    hits = {str(p.relative_to(installed_package)): m for p in files if (m := match(rules, p.read_bytes()).names)}
    assert hits == {}


def test_the_rules_see_a_real_shell_so_the_check_can_fail(installed_package: Path, tmp_path: Path):
    """The generator's own output does match: the encoded bodies decode to real signatures."""
    from exhunt.synth import files

    rules = compile_rules()
    assert "exhunt:exhunt_eval_request_unsafe" in match(rules, files.CHOPPER.encode()).names
    dump = files.oab_vdir_dump("EXCH01", "exch01.corp.example", "0", "3/3/2021 4:12:09 AM")
    assert "exhunt:exhunt_oab_settings_dump_with_script" in match(rules, dump.encode()).names


def test_no_installed_file_raises_a_content_rule_finding(installed_package: Path, tmp_path: Path):
    root = tmp_path / "PKGHOST-triage"
    web = root / "PKGHOST" / "C" / "inetpub" / "wwwroot" / "pkg"
    count = 0
    for p in sorted(installed_package.rglob("*")):
        if p.is_file():
            target = web / (p.relative_to(installed_package).as_posix().replace("/", "__") + ".aspx")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)
            count += 1
    content_rules = {r.id for r in load_rules() if r.source == "files" and "yara" in repr(r.where)}
    assert {"file-webshell-content", "file-webshell-pst-or-certreq"} <= content_rules
    result = scan(root, ScanOptions(case=tmp_path / "pkg.duckdb"))
    flagged = [(f.rule.id, [e.path for e in f.evidence]) for f in result.findings if f.rule.id in content_rules]
    assert flagged == []
    import duckdb

    con = duckdb.connect(str(tmp_path / "pkg.duckdb"), read_only=True)
    try:
        scanned, as_logs, matched = con.execute(
            "SELECT count(*) FILTER (WHERE yara IS NOT NULL), count(*) FILTER (WHERE yara IS NULL AND log_table "
            "IS NOT NULL), count(*) FILTER (WHERE len(yara) > 0) FROM artifacts WHERE name LIKE '%.aspx'"
        ).fetchone()
    finally:
        con.close()
    # a few source files look like logs by content (their docstrings hold sample headers) and are read
    # as logs; the direct YARA test above covers those bytes too
    assert scanned + as_logs == count and scanned > count - 10 and matched == 0, (scanned, as_logs, count, matched)
