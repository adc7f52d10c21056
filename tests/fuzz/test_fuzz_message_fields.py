"""Message-only parsing on hostile text: labels, headings and separators of the declared layouts in any
order and number, with arbitrary text between. Never raises, returns strings only, and a structured
field already present is never replaced. Runs large under `make fuzz` (FUZZ=1)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exhunt.sources.message_fields import fields_from_message, fill_from_message, layout_for
from tests.fuzz.conftest import keep_failure

KINDS = [
    ("Security", "Microsoft-Windows-Security-Auditing", 4688),
    ("Security", "Microsoft-Windows-Security-Auditing", 4624),
    ("Security", None, 4648),
    ("Microsoft-Windows-Sysmon/Operational", None, 1),
    ("Microsoft-Windows-Sysmon/Operational", None, 255),  # no declared field list: any `Key:`
    ("MSExchange Management", "MSExchange CmdletLogs", 1),
    ("Microsoft-Windows-PowerShell/Operational", None, 4104),
]
PIECES = st.sampled_from(
    ["Subject:", "New Logon:", "Account Name:", "Process Information:", "New Process Name:", "Logon Type:",
     "Image:", "ParentImage:", "CommandLine:", "Cmdlet succeeded. Cmdlet ", ", parameters ", "Caller:",
     "Creating Scriptblock text (1 of 1):", "ScriptBlock ID:", "Path:", "\n", "\r\n", "\t", " ", ".", "{", "}=",
     "This event is generated when"]
)  # fmt: skip
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=40)), max_size=60).map("".join)


@given(kind=st.sampled_from(KINDS), text=TEXT)
def test_parsing_hostile_messages_never_raises(kind, text):
    layout = layout_for(*kind)
    assert layout is not None

    def check() -> None:
        fields = fields_from_message(layout, text)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
        data = {"Image": "C:\\structured.exe", "NewProcessName": "C:\\structured.exe", "param1": "Structured"}
        fill_from_message(data, kind[0], kind[1], kind[2], text)
        assert data["Image"] == data["NewProcessName"] == "C:\\structured.exe" and data["param1"] == "Structured"

    keep_failure("message-fields", text.encode("utf-8", "surrogatepass"), check)
