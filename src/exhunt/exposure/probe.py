"""Passive remote check of YOUR OWN Exchange server: read its build from public OWA/ECP pages.

Plain GETs of fixed, public paths only; no cookies, no credentials, no crafted paths or payloads.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from exhunt import __version__
from exhunt.errors import UsageError
from exhunt.exposure.builds import Assessment, Build, assess, parse_build

USER_AGENT = f"exhunt/{__version__} passive-exposure-check"
LOGON_PATH = "/owa/auth/logon.aspx"
OWA_PATH = "/owa/"
EXPORTTOOL_PATH = "/ecp/Current/exporttool/microsoft.exchange.ediscovery.exporttool.application"
MAX_BODY = 1 << 20
MAX_REDIRECTS = 5

_AUTH_PATH_RE = re.compile(r"/owa/auth/(\d{1,2}\.\d{1,2}\.\d{1,5}(?:\.\d{1,5})?)/", re.I | re.ASCII)
_ASSEMBLY_RE = re.compile(r"<(?:[\w.-]+:)?assemblyIdentity\b[^>]*>", re.I)
_ATTR_RE = re.compile(r"\b(name|version)\s*=\s*[\"']([^\"']*)[\"']", re.I)
_EXCHANGE_HEADERS = ("x-owa-version", "x-feserver", "x-beserver", "x-calculatedbetarget")


@dataclass(frozen=True)
class Evidence:
    source: str
    value: str


@dataclass(frozen=True)
class Fetch:
    url: str
    status: int | None
    note: str = ""


@dataclass(frozen=True)
class ProbeResult:
    url: str
    exchange_detected: bool
    build: str | None
    build_complete: bool
    assessment: Assessment | None
    evidence: tuple[Evidence, ...]
    fetches: tuple[Fetch, ...]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "exchange_detected": self.exchange_detected,
            "build": self.build,
            "build_complete": self.build_complete,
            "message": self.message,
            "evidence": [e.__dict__ for e in self.evidence],
            "fetches": [f.__dict__ for f in self.fetches],
            "assessment": self.assessment.to_dict() if self.assessment else None,
        }


@dataclass(frozen=True)
class _Answer:
    url: str
    status: int
    headers: dict[str, str]
    body: str


# ----------------------------------------------------------------------------- URL and transport


def _clean(text: object, limit: int = 160) -> str:
    """One printable line, bounded: text may come from the network."""
    line = re.sub(r"[\x00-\x1f\x7f]+", " ", str(text)).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def validate_url(url: str) -> str:
    """'https://mail.example.org/owa' -> 'https://mail.example.org'. UsageError when malformed."""
    raw = url.strip() if isinstance(url, str) else ""
    if not raw or re.search(r"[\s\x00-\x1f\x7f]", raw):
        raise UsageError(f"malformed URL {_clean(repr(url), 80)}: expected e.g. https://mail.example.org")
    parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https"):
        raise UsageError(f"URL {_clean(raw, 80)} must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise UsageError("URL must not contain a user name or password")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"URL {_clean(raw, 80)} has an invalid port") from None
    host = _ascii_host(parts.hostname or "")
    if not host:
        raise UsageError(f"URL {_clean(raw, 80)} has no valid host name")
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{netloc}" + (f":{port}" if port else "")


def _ascii_host(host: str) -> str:
    """The host in ASCII (IDNA for international names), or '' when it is not a host name."""
    if ":" in host:
        return host if re.fullmatch(r"[0-9A-Fa-f:.]+", host) else ""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return ""
    return ascii_host if re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?", ascii_host) else ""


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to the host the user named (any port, http or https)."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, base: str) -> None:
        super().__init__()
        self.host = urlsplit(base).hostname

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        target = urlsplit(urljoin(req.full_url, newurl))
        if target.scheme not in ("http", "https") or target.hostname != self.host:
            return None  # urllib then reports the 3xx answer itself
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(base: str, verify_tls: bool) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context()
    if not verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=context),
        _SameHostRedirects(base),
    )


def _read_body(resp: Any, deadline: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < MAX_BODY:
        if time.monotonic() > deadline:
            raise TimeoutError("body not received in time")
        try:
            chunk = resp.read(min(65536, MAX_BODY - total))
        except http.client.IncompleteRead as partial:
            chunks.append(partial.partial)
            break
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _describe(error: BaseException, url: str, timeout: float) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"{url}: no answer within {timeout:g} s (timed out)"
    if isinstance(reason, ssl.SSLCertVerificationError):
        why = _clean(reason.verify_message or reason)
        return f"{url}: TLS certificate not trusted ({why}); --insecure skips the check"
    if isinstance(reason, ssl.SSLError):
        return f"{url}: TLS error ({_clean(reason.reason or reason)})"
    if isinstance(reason, ConnectionRefusedError):
        return f"{url}: connection refused"
    if isinstance(reason, socket.gaierror):
        return f"{url}: host name not found ({_clean(reason)})"
    if isinstance(reason, http.client.HTTPException):
        return f"{url}: malformed HTTP answer ({type(reason).__name__}: {_clean(reason, 80)})"
    return f"{url}: request failed ({type(reason).__name__}: {_clean(reason, 80)})"


def _get(opener: urllib.request.OpenerDirector, url: str, timeout: float) -> _Answer:
    """One plain GET. Network-level failures raise UsageError with a one-line message."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"}, method="GET")
    deadline = time.monotonic() + timeout
    try:
        try:
            resp = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as answer:  # 4xx/5xx (and unfollowed 3xx) are still answers
            resp = answer
        with resp:
            body = _read_body(resp, deadline)
            headers = {k.lower(): _clean(v, 300) for k, v in resp.headers.items()} if resp.headers else {}
            return _Answer(resp.geturl() or url, resp.status or 0, headers, body.decode("utf-8", "replace"))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise UsageError(_describe(error, url, timeout)) from None


# ----------------------------------------------------------------------------- reading the build


def _builds_in(answer: _Answer, label: str) -> list[tuple[Build, Evidence]]:
    found: list[tuple[Build, Evidence]] = []
    header = answer.headers.get("x-owa-version", "")
    if header:
        found += _candidate(header, f"X-OWA-Version header of {label}")
    for text in dict.fromkeys(_AUTH_PATH_RE.findall(answer.body)):
        found += _candidate(text, f"/owa/auth/<build>/ path in {label}")
    return found


def _exporttool_builds(answer: _Answer, label: str) -> list[tuple[Build, Evidence]]:
    for tag in _ASSEMBLY_RE.findall(answer.body):
        attrs = {k.lower(): v for k, v in _ATTR_RE.findall(tag)}
        if "exporttool" in attrs.get("name", "").lower() and attrs.get("version"):
            return _candidate(attrs["version"], f"assemblyIdentity version in {label}")
    return []


def _candidate(text: str, source: str) -> list[tuple[Build, Evidence]]:
    try:
        build = parse_build(text, allow_partial=True)
    except UsageError:
        return []
    return [(build, Evidence(source, str(build)))]


def _choose(candidates: list[tuple[Build, Evidence]]) -> tuple[Build | None, str]:
    complete = sorted({b for b, _ in candidates if b.revision_known})
    partial = sorted({b for b, _ in candidates if not b.revision_known})
    chosen = complete[-1] if complete else (partial[-1] if partial else None)
    cus = {b.numbers[:3] for b in complete + partial}
    note = "; the page shows builds of more than one CU, the highest is used" if len(cus) > 1 else ""
    return chosen, note


def _looks_like_exchange(answers: list[_Answer]) -> bool:
    return any(h in a.headers for a in answers for h in _EXCHANGE_HEADERS)


def _message(base: str, build: Build | None, detected: bool, assessment: Assessment | None) -> str:
    if build is None and detected:
        return f"{base} looks like Exchange but shows no build (the version may be hidden by a proxy)"
    if build is None:
        return (
            f"no Exchange build visible at {base}: the server answered without an OWA logon page build path "
            "or X-OWA-Version header (not Exchange, or the version is hidden)"
        )
    where = assessment.where if assessment else "unknown"
    if not build.revision_known:
        return (
            f"{base} shows only the CU-level build {build} ({where}); the security-update level cannot be "
            "told remotely: check the build on the server (ExSetup.exe file version) with --build"
        )
    return f"{base} runs Exchange build {build} ({where})"


def probe_url(url: str, timeout: float = 10.0, verify_tls: bool = True) -> ProbeResult:
    """Read the build from /owa/auth/logon.aspx (else /owa/, then the ECP export tool manifest)."""
    if not timeout or timeout <= 0:
        raise UsageError("timeout must be a positive number of seconds")
    base = validate_url(url)
    opener = _opener(base, verify_tls)
    answers: list[_Answer] = []
    fetches: list[Fetch] = []
    candidates: list[tuple[Build, Evidence]] = []

    def fetch(path: str, required: bool) -> _Answer | None:
        try:
            answer = _get(opener, base + path, timeout)
        except UsageError as error:
            if required:
                raise
            fetches.append(Fetch(base + path, None, str(error)))
            return None
        answers.append(answer)
        fetches.append(Fetch(base + path, answer.status, "" if answer.url == base + path else f"ended at {answer.url}"))
        return answer

    candidates += _builds_in(fetch(LOGON_PATH, required=True), LOGON_PATH)  # type: ignore[arg-type]
    if not candidates and (owa := fetch(OWA_PATH, required=False)):
        candidates += _builds_in(owa, OWA_PATH)
    incomplete = not any(b.revision_known for b, _ in candidates)
    if incomplete and (candidates or _looks_like_exchange(answers)):
        export = fetch(EXPORTTOOL_PATH, required=False)
        candidates += _exporttool_builds(export, "the ECP export tool manifest") if export else []
    build, note = _choose(candidates)
    detected = bool(candidates) or _looks_like_exchange(answers)
    assessment = assess(build) if build else None
    return ProbeResult(
        url=base,
        exchange_detected=detected,
        build=str(build) if build else None,
        build_complete=bool(build and build.revision_known),
        assessment=assessment,
        evidence=tuple(e for _, e in candidates),
        fetches=tuple(fetches),
        message=_message(base, build, detected, assessment) + note,
    )
