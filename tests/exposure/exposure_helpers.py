"""Helpers for the exposure tests: a throwaway HTTP server on 127.0.0.1, fake OWA pages, data paths."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# tests/exposure/exposure_helpers.py -> parents[2] is the repo root; the shared folder sits beside it
# (a git worktree may sit one level deeper, so its grandparent is tried too).
_ROOT = Path(__file__).resolve().parents[2]
SHARED = next(
    (p for p in (_ROOT.parent / "shared", _ROOT.parent.parent / "shared") if p.is_dir()), _ROOT.parent / "shared"
)
CONFIG_DIR = SHARED / "data" / "exchange-config" / "Diagnostics/HealthChecker/Tests/DataCollection/E19/Exchange/IIS"

SLOW = "slow"
GARBAGE = "garbage"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = ""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        return

    def do_GET(self) -> None:
        self.server.seen.append(Seen("GET", self.path, dict(self.headers.items())))
        self._answer()

    def do_POST(self) -> None:
        self.server.seen.append(Seen("POST", self.path, dict(self.headers.items())))
        self._answer()

    def _answer(self) -> None:
        route = self.server.routes.get(self.path) or self.server.routes.get(self.path.split("?")[0])
        route = route or Route(404, b"<html><body>not found</body></html>")
        if route.mode == SLOW:
            self.server.release.wait(10)
        if route.mode == GARBAGE:
            self.wfile.write(b"\x00\xff\xfe[bold]garbage[/bold] \x1b[31m\r\n\r\n")
            self.close_connection = True
            return
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def owa_page(build_path: str) -> bytes:
    """A minimal OWA logon page referencing /owa/auth/<build>/ resources, as Exchange does."""
    return (
        "<!DOCTYPE html><html><head><title>Outlook</title>"
        f'<link rel="shortcut icon" href="/owa/auth/{build_path}/themes/resources/favicon.ico" type="image/x-icon">'
        f'<link type="text/css" rel="stylesheet" href="/owa/auth/{build_path}/themes/resources/logon.css">'
        '</head><body><form action="/owa/auth.owa" method="POST" name="logonForm"></form></body></html>'
    ).encode()


def exporttool_manifest(build: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<asmv1:assembly manifestVersion="1.0" xmlns:asmv1="urn:schemas-microsoft-com:asm.v1" '
        'xmlns="urn:schemas-microsoft-com:asm.v2">\n'
        '  <asmv1:assemblyIdentity name="microsoft.exchange.ediscovery.exporttool.application" '
        f'version="{build}" publicKeyToken="b1d1a6c45aa418ce" language="neutral" processorArchitecture="msil" />\n'
        "</asmv1:assembly>\n"
    ).encode()
