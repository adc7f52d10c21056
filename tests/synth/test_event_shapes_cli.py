"""`exhunt synth --export-shape message-only|sentinel-events` writes the event export shapes."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from exhunt.cli import app

runner = CliRunner()


def test_message_only_and_sentinel_shapes_from_the_cli(tmp_path):
    out = tmp_path / "mo"
    result = runner.invoke(app, ["synth", str(out), "--users", "2", "--days", "2", "--export-shape", "message-only"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "answer_key.json").read_text())["export_shape"] == "message-only"
    first = json.loads((out / "EXCH01/EventLogs/winlogbeat-security.ndjson").read_text().splitlines()[0])
    assert "Message" in first and "winlog" not in first and "event_data" not in json.dumps(first)

    out = tmp_path / "sentinel"
    result = runner.invoke(app, ["synth", str(out), "--users", "2", "--days", "2", "--export-shape", "sentinel-events"])
    assert result.exit_code == 0, result.output
    with (out / "EXCH01/EventLogs/sentinel-sysmon.csv").open(newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["RenderedDescription"] and "Image:" in row["RenderedDescription"]

    result = runner.invoke(app, ["synth", str(tmp_path / "x"), "--export-shape", "splunk-and-more"])
    assert result.exit_code == 2 and "unknown --export-shape" in result.output
