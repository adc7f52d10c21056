"""Passive --url check against a throwaway server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import socket
import time

import pytest
from exposure_helpers import GARBAGE, SLOW, FakeServer, Route, exporttool_manifest, owa_page

from exhunt.errors import UsageError
from exhunt.exposure import builds as b
from exhunt.exposure.probe import EXPORTTOOL_PATH, LOGON_PATH, OWA_PATH, USER_AGENT, probe_url, validate_url

ALLOWED_PATHS = {LOGON_PATH, OWA_PATH, EXPORTTOOL_PATH}


def assert_passive(server: FakeServer) -> None:
    assert server.seen, "no request reached the server"
    for seen in server.seen:
        assert seen.method == "GET"
        assert seen.path.split("?")[0] in ALLOWED_PATHS
        headers = {k.lower(): v for k, v in seen.headers.items()}
        assert headers["user-agent"] == USER_AGENT
        assert "cookie" not in headers and "authorization" not in headers
        assert headers["host"].startswith("127.0.0.1:")


def test_logon_page_with_full_build(http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(body=owa_page("15.1.2106.2"))
    result = probe_url(http_server.url, timeout=5)
    assert (result.build, result.build_complete, result.exchange_detected) == ("15.1.2106.2", True, True)
    assert result.assessment is not None and result.assessment.cu == "CU18"
    assert result.assessment.status("proxylogon") == b.VULNERABLE
    assert [s.path for s in http_server.seen] == [LOGON_PATH]  # nothing more was needed
    assert_passive(http_server)


def test_cu_level_build_completed_by_export_tool(http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(body=owa_page("15.1.2106"))
    http_server.routes[EXPORTTOOL_PATH] = Route(body=exporttool_manifest("15.1.2106.13"))
    result = probe_url(http_server.url + "/owa/", timeout=5)
    assert (result.build, result.build_complete) == ("15.1.2106.13", True)
    assert result.assessment is not None
    assert result.assessment.status("proxylogon") == b.PATCHED
    assert result.assessment.status("proxyshell") == b.VULNERABLE
    assert {e.value for e in result.evidence} == {"15.1.2106", "15.1.2106.13"}
    assert_passive(http_server)


def test_cu_level_build_only(http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(body=owa_page("15.2.792"))
    result = probe_url(http_server.url, timeout=5)
    assert (result.build, result.build_complete) == ("15.2.792", False)
    assert "cannot be told remotely" in result.message
    assert result.assessment is not None and result.assessment.cu == "CU8"
    assert result.assessment.status("proxylogon") == b.UNKNOWN
    assert result.assessment.status("proxynotshell") == b.VULNERABLE  # CU8 never got Nov22SU
    assert [s.path for s in http_server.seen] == [LOGON_PATH, EXPORTTOOL_PATH]
    assert_passive(http_server)


def test_owa_version_header(http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(body=b"<html>Outlook</html>", headers={"X-OWA-Version": "15.2.1118.20"})
    result = probe_url(http_server.url, timeout=5)
    assert result.build == "15.2.1118.20"
    assert result.evidence[0].source.startswith("X-OWA-Version")
    assert result.assessment is not None and result.assessment.status("owassrf") == b.PATCHED


def test_redirects_on_the_same_host_are_followed(http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(404, b"gone")
    http_server.routes[OWA_PATH] = Route(302, headers={"Location": "/owa/auth/logon.aspx?url=%2fowa%2f&reason=0"})
    http_server.routes[LOGON_PATH + "?url=%2fowa%2f&reason=0"] = Route(body=owa_page("15.0.1497.44"))
    result = probe_url(http_server.url, timeout=5)
    assert result.build == "15.0.1497.44"
    assert result.assessment is not None and result.assessment.status("proxynotshell") == b.PATCHED
    assert_passive(http_server)


def test_redirect_to_another_host_is_not_followed(http_server: FakeServer) -> None:
    port = http_server.server_address[1]
    elsewhere = f"http://localhost:{port}{LOGON_PATH}?x=1"
    http_server.routes[LOGON_PATH] = Route(302, headers={"Location": elsewhere})
    http_server.routes[LOGON_PATH + "?x=1"] = Route(body=owa_page("15.1.2176.9"))
    result = probe_url(http_server.url, timeout=5)
    assert result.build is None
    assert_passive(http_server)  # every Host header is 127.0.0.1: localhost was never asked


def test_non_exchange_page(http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(body=b"<html><body>It works!</body></html>")
    result = probe_url(http_server.url, timeout=5)
    assert (result.build, result.exchange_detected, result.assessment) == (None, False, None)
    assert "no Exchange build visible" in result.message
    assert [s.path for s in http_server.seen] == [LOGON_PATH, OWA_PATH]
    assert result.to_dict()["assessment"] is None


def test_slow_server_times_out_quickly(http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(body=owa_page("15.1.2176.9"), mode=SLOW)
    started = time.monotonic()
    with pytest.raises(UsageError, match="timed out"):
        probe_url(http_server.url, timeout=0.3)
    assert time.monotonic() - started < 3


def test_garbage_answer(http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(mode=GARBAGE)
    with pytest.raises(UsageError, match="malformed HTTP answer") as caught:
        probe_url(http_server.url, timeout=5)
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


def test_tls_error_is_reported(http_server: FakeServer) -> None:
    url = http_server.url.replace("http://", "https://")
    with pytest.raises(UsageError, match="TLS"):
        probe_url(url, timeout=5)


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UsageError, match="refused"):
        probe_url(f"http://127.0.0.1:{port}", timeout=2)


@pytest.mark.parametrize(
    "url",
    ["", "mail.example.org", "ftp://mail.example.org", "https://", "https:///owa", "https://user:pw@mail.example.org",
     "https://mail.example.org:99999", "https://mail.example.org:port", "https://mail example.org",
     "https://mail.exa\nmple.org", "https://a..b", "https://exa_mple.org", "javascript:alert(1)"],
)  # fmt: skip
def test_malformed_urls(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate_url(url)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://mail.example.org", "https://mail.example.org"),
        ("  HTTPS://Mail.Example.org/owa/?x=1#y ", "https://mail.example.org"),
        ("http://10.0.0.5:8080/", "http://10.0.0.5:8080"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_valid_urls_are_reduced_to_the_origin(url: str, base: str) -> None:
    assert validate_url(url) == base


def test_bad_timeout() -> None:
    with pytest.raises(UsageError):
        probe_url("http://127.0.0.1:1", timeout=0)
