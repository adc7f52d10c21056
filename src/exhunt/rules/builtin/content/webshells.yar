// exhunt's own content rules for Exchange web shells. Written for exhunt from public descriptions
// (CISA AA21-062A indicators as restated by CHIRP, HelseCERT's notes, Microsoft's guidance).

rule exhunt_eval_request_unsafe
{
    meta:
        description = "Server-side script evaluating request data with JScript's \"unsafe\" flag (China Chopper style one-liner)"
    strings:
        $eval = /eval\s*\(\s*Request(\.Item)?\s*[\[\(]/ nocase
        $unsafe = /["']unsafe["']/ nocase
    condition:
        filesize < 2MB and $eval and $unsafe
}

rule exhunt_oab_settings_dump_with_script
{
    meta:
        description = "OAB virtual directory settings written to disk with a server-side script in a URL (CVE-2021-27065 shell)"
    strings:
        $a = "ExternalUrl" nocase
        $b = "InternalAuthenticationMethods" nocase
        $c = "ExtendedProtectionTokenChecking" nocase
        $script = /<script[^>]{0,80}runat\s*=\s*["']?server/ nocase
    condition:
        filesize < 2MB and all of them
}

rule exhunt_pst_bytes
{
    meta:
        description = "Outlook PST file (magic !BDN): a mailbox export; as .aspx it is a ProxyShell export web shell"
    condition:
        uint32(0) == 0x4E444221
}

rule exhunt_der_certificate_request
{
    meta:
        description = "DER-encoded PKCS#10 certificate request; as .aspx it is a New-ExchangeCertificate web shell"
    condition:
        uint16be(0) == 0x3082 and uint16be(4) == 0x3082 and uint8(8) == 0x02 and uint8(9) == 0x01 and uint8(10) == 0x00
}

rule exhunt_script_runat_server_small
{
    meta:
        description = "Tiny page whose only content is a server-side script block: typical of dropped shells"
    strings:
        $runat = /runat\s*=\s*["']?server/ nocase
        $req = "Request" nocase
    condition:
        filesize < 4KB and $runat and $req
}

// ---- ASP.NET web shells in every handler form (.aspx .ashx .asmx .asax .cshtml .config) --------
// Written for exhunt from public descriptions of the families: China Chopper and AntSword (JScript
// eval of a request field, often wrapped in base64 or char codes), ASPXSpy (a page of file, command
// and database tools), Godzilla and Behinder (an encrypted request body loaded as an assembly),
// reGeorg/Neo-reGeorg and Tunna (a socket kept in the session and fed from requests), and
// web.config files that carry inline code, handlers or compiler settings. Patterns are written so
// that this file itself never matches them (escaped punctuation, character classes).

rule exhunt_eval_request_data
{
    meta:
        description = "Server-side JScript eval of request data, plain, base64-decoded or built from char codes (China Chopper, AntSword)"
    strings:
        $server = /(<%|runat\s*=\s*["']?server)/ nocase
        $plain = /eval\s*\(\s*((HttpContext\.Current|Context|this|Page)\.)?Request(\.(Item|Form|QueryString|Params|Headers|Cookies))?\s*[\[\(]/ nocase
        $decoded = /eval\s*\([^;]{0,240}From[B]ase64String\s*\([^;]{0,120}Reques[t]/ nocase
        $unescaped = /eval\s*\([^;]{0,120}(HttpUtility\.UrlDecode|Server\.UrlDecode|unescape|decodeURIComponent)\s*\([^;]{0,80}Reques[t]/ nocase
        $jscript = /<%@\s*(Page|WebHandler|WebService|Application)[^>]{0,200}Language\s*=\s*["']?J(ava)?Script/ nocase
        $charcode = /eval\s*\([^;]{0,80}(fromCharCode|Strin[g]\s*\(\s*new\s+char\s*\[)/ nocase
    condition:
        filesize < 2MB and $server and ($plain or $decoded or $unescaped or ($jscript and $charcode))
}

rule exhunt_assembly_load_request
{
    meta:
        description = "Request data decrypted or decoded and loaded as a .NET assembly in memory (Godzilla, Behinder style)"
    strings:
        $load = /Assembly\s*\.\s*Load\s*\(/ nocase
        $req = /Reques[t]\s*(\.\s*(BinaryRead|InputStream|Form|Item|Params|QueryString|Cookies|Headers)|\s*\[)/ nocase
        $b64 = /From[B]ase64String\s*\(/ nocase
        $crypt = /(CreateDecrypto[r]|TransformFinalBloc[k]|RijndaelManage[d]|AesManage[d]|Aes\.Creat[e])/ nocase
        $xor = /\^\s*[a-z_]\w*\s*\[\s*[a-z_]\w*\s*(\+\s*1\s*)?[&%]\s*\d+\s*\]/ nocase
        $inst = /\.\s*(CreateInstanc[e]|GetTyp[e]\s*\([^)]{0,80}\)\s*\.\s*GetMetho[d]|EntryPoin[t])/ nocase
    condition:
        filesize < 2MB and $load and $req and ($b64 or $crypt or $xor or $inst)
}

rule exhunt_command_exec_request
{
    meta:
        description = "Server code that starts a command interpreter with request or method input and returns its output (ASPXSpy-style tools, command shells)"
    strings:
        $proc = /(ProcessStartInf[o]|Process\s*\.\s*Star[t]\s*\(|new\s+(System\.Diagnostics\.)?Proces[s]\s*\(\s*\))/ nocase
        $interp = /(cmd\.ex[e]|powershell(\.exe)?["'\s]|["']\/[ck]\s)/ nocase
        $redirect = /RedirectStandard(Outpu[t]|Erro[r])/ nocase
        $req = /(Reques[t]\s*[\[\.]|\[\s*WebMetho[d]|IHttpHandle[r]|@\s*Reques[t])/ nocase
        $server = /(<%|runat\s*=\s*["']?server|\[\s*WebMetho[d]|IHttpHandle[r]|(^|\n)[ \t]*@(\{|using\s+System))/ nocase
    condition:
        filesize < 4MB and $server and $proc and $req and ($interp or $redirect)
}

rule exhunt_aspxspy_toolkit
{
    meta:
        description = "ASPXSpy-style all-in-one page: its name plus file, command and database tools in one server page"
    strings:
        $name = /ASPX\s?Sp[y]/ nocase
        $server = /(<%|runat\s*=\s*["']?server)/ nocase
        $files = /(Directory\s*\.\s*GetFile[s]|DirectoryInf[o]|File\s*\.\s*Delet[e])/ nocase
        $tools = /(ProcessStartInf[o]|SqlConnectio[n]|OleDbConnectio[n]|Registry\s*\.\s*LocalMachin[e])/ nocase
    condition:
        filesize < 4MB and $name and $server and ($files or $tools)
}

rule exhunt_socket_tunnel_request
{
    meta:
        description = "Server page that opens a socket and relays request data through it, keeping it in the session or application (reGeorg, Neo-reGeorg, Tunna)"
    strings:
        $sock = /(System\.Net\.Socket[s]|new\s+Socke[t]\s*\(|TcpClien[t]\s*\()/ nocase
        $connect = /\.\s*(Begin)?Connec[t]\s*\(/ nocase
        $req = /Reques[t]\s*(\.\s*(BinaryRead|InputStream|Headers|Form|QueryString|Item|Params)|\s*\[)/ nocase
        $state = /(Sessio[n]|Applicatio[n])\s*(\[|\.\s*(Add|Item)\b)/ nocase
        $cmd_hdr = /X\-(CM[D]|STATU[S]|TARGE[T])/ nocase
        $verbs = /["'](CONNEC[T]|DISCONNEC[T]|FORWAR[D])["']/
    condition:
        filesize < 2MB and $sock and $connect and $req and ($state or ($cmd_hdr and $verbs))
}

rule exhunt_handler_exec
{
    meta:
        description = "Web service, handler, module or Global.asax whose code runs commands, evaluates code or loads assemblies (.asmx/.ashx/.asax backdoors)"
    strings:
        $kind = /(<%@\s*(WebService|WebHandler|Application)\b|\[\s*WebMetho[d]|:\s*IHttp(Handle[r]|Modul[e])|Application_(BeginReques[t]|AuthenticateReques[t]|Star[t]|PreRequestHandlerExecut[e]))/ nocase
        $proc = /(ProcessStartInf[o]|Process\s*\.\s*Star[t]\s*\()/ nocase
        $interp = /(cmd\.ex[e]|powershell(\.exe)?["'\s]|["']\/[ck]\s)/ nocase
        $load = /Assembly\s*\.\s*Load\s*\(/ nocase
        $b64 = /From[B]ase64String\s*\(/ nocase
        $eval = /eval\s*\(\s*[A-Za-z_]/ nocase
        $jscript = /Language\s*=\s*["']?J(ava)?Script/ nocase
    condition:
        filesize < 2MB and $kind and (($proc and $interp) or ($load and $b64) or ($eval and $jscript))
}

rule exhunt_config_serves_itself
{
    meta:
        description = "web.config that unblocks .config files for serving or maps a handler and carries server-side code (web.config web shell)"
    strings:
        $cfg = /<configuratio[n]/ nocase
        $unblock = /<remove\s+(fileExtension\s*=\s*["']\.confi[g]["']|segment\s*=\s*["']web\.confi[g]["'])/ nocase
        $handler = /<add\s[^>]{0,300}(path\s*=\s*["'][^"']{0,40}\.confi[g]|scriptProcesso[r]\s*=\s*["'][^"']{0,200}(asp\.dl[l]|aspnet_isapi\.dl[l]))/ nocase
        $code = /(<%[^@]|<script[^>]{0,80}runat\s*=\s*["']?server)/ nocase
    condition:
        filesize < 2MB and $cfg and ($unblock or $handler) and $code
}

rule exhunt_config_compiler_injection
{
    meta:
        description = "web.config whose compiler settings pull in an assembly or resource from outside the Exchange and .NET folders, or that carries inline server code"
    strings:
        $cfg = /<configuratio[n]/ nocase
        $options = /compilerOption[s]\s*=\s*["'][^"']{0,400}\/(r|reference|resource|res|linkresource|win32res|addmodule)\s*:\s*["']?([A-Za-z]:\\(ProgramData|Users|Windows\\Temp|inetpub)|\\\\|%)/ nocase
        $inline = /<script[^>]{0,80}runat\s*=\s*["']?server/ nocase
    condition:
        filesize < 2MB and $cfg and ($options or $inline)
}
