"""Message-only parsing on hostile text: labels, headings and separators of the declared layouts in any
order and number, with arbitrary text between. Never raises, returns strings only, and a structured
field already present is never replaced. Runs large under `make fuzz` (FUZZ=1)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from exhunt.sources.message_fields import Shapes, fields_from_message, fill_from_message, layout_for
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


TEMPLATES = {
    (*KINDS[0][:2], 4688): (
        "A new process has been created.\n\nCreator Subject:\n\tSecurity ID:\t\tS-1-5-18\n\tAccount Name:\t\tEXCH01$\n"
        "\tLogon ID:\t\t0x3E7\n\nProcess Information:\n\tNew Process ID:\t\t0x21d0\n"
        "\tNew Process Name:\tC:\\Windows\\System32\\cmd.exe\n\tCreator Process Name:\tC:\\w3wp.exe\n"
        "\tProcess Command Line:\tcmd /c whoami\n\nToken Elevation Type indicates the type of token."
    ),
    ("Microsoft-Windows-Sysmon/Operational", None, 1): (
        "Process Create:\nRuleName: -\nImage: C:\\Windows\\System32\\cmd.exe\nCommandLine: cmd /c echo x\n"
        "ParentImage: C:\\w3wp.exe\nParentCommandLine: w3wp.exe -ap x"
    ),
}
VALUE = st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=6).map("".join)


@given(kind=st.sampled_from(sorted(TEMPLATES, key=str)), values=st.lists(VALUE, min_size=12, max_size=12))
def test_a_learnt_message_shape_reads_as_line_by_line(kind, values):
    """Messages of a shape met before are read by one regex match: any values (labels, line breaks,
    blanks) give exactly what the line-by-line reader gives."""
    warm = replace(layout_for(*kind), shapes=Shapes())
    template = TEMPLATES[kind]
    for _ in range(2):  # the second sighting learns the shape
        fields_from_message(warm, template)
    assert warm.shapes.known, "the template's shape was not learnt"
    lines, k = template.split("\n"), 0
    for i, line in enumerate(lines):
        head, colon, rest = line.partition(":")
        if colon and k < len(values):  # headings too: a heading given a value is a heading no more
            lines[i] = head + colon + rest[: len(rest) - len(rest.lstrip())] + values[k]
            k += 1
    text = "\n".join(lines)

    def check() -> None:
        slow = fields_from_message(replace(warm, shapes=Shapes()), text)
        assert fields_from_message(warm, text) == slow

    keep_failure("message-shape", text.encode("utf-8", "surrogatepass"), check)
