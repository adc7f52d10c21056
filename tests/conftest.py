"""Shared fixtures: the team's real samples beside the repo, and small collections built per test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# converted Sigma rules are cached per user; the tests keep theirs apart and throw it away
if "EXHUNT_CACHE" not in os.environ:
    os.environ["EXHUNT_CACHE"] = tempfile.mkdtemp(prefix="exhunt-test-cache-")
    atexit.register(shutil.rmtree, os.environ["EXHUNT_CACHE"], True)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXHUNT_SHARED") or REPO.parent / "shared")  # a worktree elsewhere sets EXHUNT_SHARED


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real sample data not available: {path} (../shared beside the repo is absent; EXHUNT_SHARED names another)"
        )
    return path


INSTALL = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15"


def write(root: Path, rel: str, content: str | bytes, crlf: bool = True) -> Path:
    """Write a file into a test collection; text gets CRLF line ends like Windows logs."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        if crlf:
            content = content.replace("\r\n", "\n").replace("\n", "\r\n")
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


HTTPPROXY_FIELDS = (
    "DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,Protocol,UrlHost,"
    "UrlStem,ProtocolAction,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,AnchorMailbox,"
    "UserAgent,ClientIpAddress,ServerHostName,HttpStatus,BackEndStatus,ErrorCode,Method,ProxyAction,TargetServer,"
    "TargetServerVersion,RoutingType,RoutingHint,BackEndCookie,UrlQuery"
)


def httpproxy_log(rows: list[dict[str, str]], version: str = "15.01.2106.002", bare_header: bool = True) -> str:
    """An HttpProxy log with the given rows (missing fields empty)."""
    names = HTTPPROXY_FIELDS.split(",")
    out = [HTTPPROXY_FIELDS] if bare_header else []
    out += [
        "#Software: Microsoft Exchange Server",
        f"#Version: {version}",
        "#Log-type: HttpProxy Logs",
        "#Date: 2021-03-03T00:00:00.000Z",
        f"#Fields: {HTTPPROXY_FIELDS}",
    ]
    for row in rows:
        values = []
        for n in names:
            v = row.get(n, "")
            values.append(f'"{v.replace(chr(34), chr(34) * 2)}"' if ("," in v or '"' in v) else v)
        out.append(",".join(values))
    return "\n".join(out) + "\n"


IIS_FIELDS = (
    "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) "
    "sc-status sc-substatus sc-win32-status time-taken"
)


def iis_log(lines: list[str]) -> str:
    head = ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", "#Date: 2021-03-03 00:00:00"]
    return "\n".join([*head, f"#Fields: {IIS_FIELDS}", *lines]) + "\n"


@pytest.fixture(scope="session")
def planted_collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One `--plant all` synthetic server (seed 5, 12 users, 16 days) and its answer key, built once per
    session; tests read it and never write into it (copy it first)."""
    from exhunt.synth import FAMILIES, generate

    root = tmp_path_factory.mktemp("synth-planted") / "EXCH01-triage"
    key = generate(root, seed=5, users=12, days=16, plant=frozenset(FAMILIES))
    return root, key


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    root = tmp_path / "collection"
    root.mkdir()
    return root
