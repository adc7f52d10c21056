"""`exhunt exposure` registered into a throwaway Typer app."""

from __future__ import annotations

import json

import pytest
import typer
from exposure_helpers import SLOW, FakeServer, Route, owa_page
from rich.console import Console
from typer.testing import CliRunner

from exhunt.exposure import command
from exhunt.exposure.builds import assess
from exhunt.exposure.probe import LOGON_PATH, ProbeResult

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Throwaway root so `exposure` is a sub-command, as in the real CLI."""

    command.register(app)
    return app


def run(app: typer.Typer, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["exposure", *args], env=ENV)


def test_build_json(app: typer.Typer) -> None:
    result = run(app, "--build", "15.1.2176.9", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["kind"], data["product"], data["cu"]) == ("build", "Exchange 2016", "CU19")
    families = {f["family"]: f for f in data["families"]}
    assert families["proxylogon"]["status"] == "patched"
    assert families["proxyshell"]["status"] == "vulnerable"
    assert families["proxyshell"]["fixed_by"] == ["Apr21SU (KB5001779)", "May21SU (KB5003435)"]


def test_build_table(app: typer.Typer) -> None:
    result = run(app, "--build", "15.01.2106.002")
    assert result.exit_code == 0  # vulnerable is information, not failure
    for text in (
        "Exchange 2016 CU18",
        "ProxyLogon",
        "ProxyShell",
        "ProxyNotShell",
        "OWASSRF",
        "KB5000871",
        "vulnerable",
    ):
        assert text in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--build", "15.1.2176"],
        ["--build", "not a build"],
        ["--build", "15.1.2176.9\nrm -rf"],
        ["--url", "ftp://mail.example.org"],
        ["--url", "mail.example.org"],
        ["--url", "https://"],
        [],
        ["--build", "15.1.2176.9", "--url", "https://mail.example.org"],
        ["--url", "https://mail.example.org", "--timeout", "0"],
    ],
)
def test_usage_errors_exit_2_with_one_line(app: typer.Typer, args: list[str]) -> None:
    result = run(app, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exhunt: error: ")


def test_url_json(app: typer.Typer, http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(body=owa_page("15.2.858.12"))
    result = run(app, "--url", http_server.url, "--timeout", "5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["kind"], data["build"], data["build_complete"]) == ("probe", "15.2.858.12", True)
    statuses = {f["family"]: f["status"] for f in data["assessment"]["families"]}
    assert statuses["proxyshell"] == "patched" and statuses["proxynotshell"] == "vulnerable"


def test_url_table(app: typer.Typer, http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(body=owa_page("15.1.2176"))
    result = run(app, "--url", http_server.url, "--timeout", "5")
    assert result.exit_code == 0, result.output
    assert "cannot be told remotely" in " ".join(result.stdout.split())
    assert "Exchange 2016 CU19" in result.stdout


def test_url_timeout_exits_2(app: typer.Typer, http_server: FakeServer) -> None:
    http_server.routes[LOGON_PATH] = Route(mode=SLOW)
    result = run(app, "--url", http_server.url, "--timeout", "0.3")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "timed out" in result.stderr


def test_help_says_own_servers_only(app: typer.Typer) -> None:
    result = run(app, "--help")
    assert result.exit_code == 0
    assert "RESPONSIBLE FOR" in " ".join(result.stdout.split())


def test_network_text_is_not_rich_markup() -> None:
    hostile = ProbeResult("http://x", True, None, False, None, (), (), "[bold red]owned[/bold red] [link=x]y[/link]")
    console = Console(record=True, width=200, color_system=None)
    command._render(console, hostile)
    assert "[bold red]owned[/bold red] [link=x]y[/link]" in console.export_text()


def test_table_escapes_notes() -> None:
    console = Console(record=True, width=200, color_system=None)
    command._render(console, assess("15.1.1415.9"))
    assert "probably-patched" in console.export_text()
