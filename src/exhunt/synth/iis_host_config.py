"""A synthetic IIS `applicationHost.config` of an Exchange server: the stock native and managed
modules (as exhunt.exposure's stock list knows them), optionally with one planted native module.

Written by exhunt itself for the generator; only the element layout of a real file is imitated.
"""

from __future__ import annotations

from .model import INSTALL_DIR

_INETSRV = "%windir%\\System32\\inetsrv\\"
# (name, image) in the order IIS setup writes them, then what Exchange setup adds.
STOCK_NATIVE = (
    *(
        (name, _INETSRV + dll)
        for name, dll in (
            ("HttpLoggingModule", "loghttp.dll"), ("UriCacheModule", "cachuri.dll"),
            ("FileCacheModule", "cachfile.dll"), ("TokenCacheModule", "cachtokn.dll"),
            ("HttpCacheModule", "cachhttp.dll"), ("DynamicCompressionModule", "compdyn.dll"),
            ("StaticCompressionModule", "compstat.dll"), ("DefaultDocumentModule", "defdoc.dll"),
            ("DirectoryListingModule", "dirlist.dll"), ("ProtocolSupportModule", "protsup.dll"),
            ("StaticFileModule", "static.dll"), ("AnonymousAuthenticationModule", "authanon.dll"),
            ("RequestFilteringModule", "modrqflt.dll"), ("CustomErrorModule", "custerr.dll"),
            ("BasicAuthenticationModule", "authbas.dll"), ("WindowsAuthenticationModule", "authsspi.dll"),
            ("IsapiModule", "isapi.dll"), ("IsapiFilterModule", "filter.dll"),
            ("ConfigurationValidationModule", "validcfg.dll"), ("RequestMonitorModule", "iisreqs.dll"),
        )
    ),
    ("ManagedEngineV4.0_64bit", "%windir%\\Microsoft.NET\\Framework64\\v4.0.30319\\webengine4.dll"),
    ("RewriteModule", "%SystemRoot%\\system32\\inetsrv\\rewrite.dll"),
    ("PasswordExpiryModule", "%SystemRoot%\\system32\\rpcproxy\\rpcproxy.dll"),
    ("WSMan", "C:\\Windows\\system32\\wsmsvc.dll"),
    ("kerbauth", f"{INSTALL_DIR}\\Bin\\kerbauth.dll"),
    ("exppw", f"{INSTALL_DIR}\\ClientAccess\\Owa\\auth\\exppw.dll"),
    ("cafe_exppw", f"{INSTALL_DIR}\\FrontEnd\\HttpProxy\\bin\\exppw.dll"),
)  # fmt: skip
STOCK_MANAGED = (
    ("OutputCache", "System.Web.Caching.OutputCacheModule"),
    ("Session", "System.Web.SessionState.SessionStateModule"),
    ("WindowsAuthentication", "System.Web.Security.WindowsAuthenticationModule"),
    ("FormsAuthentication", "System.Web.Security.FormsAuthenticationModule"),
    ("DefaultAuthentication", "System.Web.Security.DefaultAuthenticationModule"),
    ("UrlAuthorization", "System.Web.Security.UrlAuthorizationModule"),
    ("UrlRoutingModule-4.0", "System.Web.Routing.UrlRoutingModule"),
    ("ScriptModule-4.0", "System.Web.Handlers.ScriptModule, System.Web.Extensions, Version=4.0.0.0"),
)


V15 = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"
# the two sites of an Exchange 2016/2019 server and their applications (URL path, folder)
SITES = (
    ("Default Web Site", 1, "%SystemDrive%\\inetpub\\wwwroot", tuple((p, f"{V15}\\FrontEnd\\HttpProxy\\{d}") for p, d in (
        ("owa", "owa"), ("ecp", "ecp"), ("EWS", "ews"), ("API", "rest"), ("Autodiscover", "autodiscover"),
        ("Microsoft-Server-ActiveSync", "sync"), ("OAB", "OAB"), ("PowerShell", "PowerShell"), ("mapi", "mapi"),
        ("Rpc", "rpc")))),
    ("Exchange Back End", 2, f"{V15}\\ClientAccess", tuple((p, f"{V15}\\ClientAccess\\{d}") for p, d in (
        ("owa", "owa"), ("ecp", "ecp"), ("EWS", "exchweb\\ews"), ("API", "rest"), ("Autodiscover", "Autodiscover"),
        ("Microsoft-Server-ActiveSync", "sync"), ("OAB", "OAB"), ("PowerShell", "PowerShell-Proxy"),
        ("mapi", "mapi"), ("mapi/emsmdb", "mapi\\emsmdb"), ("mapi/nspi", "mapi\\nspi")))),
)  # fmt: skip


def _esc(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def application_host(planted: tuple[str, str] | None = None) -> tuple[str, int | None]:
    """The file's text (CRLF lines) and the 1-based line of the planted `<add>` (None without one)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<configuration>", "    <system.applicationHost>",
             "        <sites>"]  # fmt: skip
    for site, number, root, apps in SITES:
        lines += [f'            <site name="{site}" id="{number}">', '                <application path="/">',
                  f'                    <virtualDirectory path="/" physicalPath="{_esc(root)}" />',
                  "                </application>"]  # fmt: skip
        for path, folder in apps:
            lines += [f'                <application path="/{path}">',
                      f'                    <virtualDirectory path="/" physicalPath="{_esc(folder)}" />',
                      "                </application>"]  # fmt: skip
        lines.append("            </site>")
    lines += ["        </sites>", "    </system.applicationHost>", "    <system.webServer>", "        <globalModules>"]
    planted_line = None
    for name, image in STOCK_NATIVE:
        lines.append(f'            <add name="{_esc(name)}" image="{_esc(image)}" />')
        if planted is not None and name == "RequestMonitorModule":  # between IIS's own, where it hides best
            lines.append(f'            <add name="{_esc(planted[0])}" image="{_esc(planted[1])}" />')
            planted_line = len(lines)
    lines += ["        </globalModules>", "    </system.webServer>", '    <location path="" overrideMode="Allow">',
              "        <system.webServer>", "            <modules>"]  # fmt: skip
    lines += [f'                <add name="{_esc(n)}" />' for n, _ in STOCK_NATIVE[:20]]
    lines += [f'                <add name="{_esc(n)}" type="{_esc(t)}" preCondition="managedHandler" />'
              for n, t in STOCK_MANAGED]  # fmt: skip
    if planted is not None:
        lines.append(f'                <add name="{_esc(planted[0])}" />')
    lines += ["            </modules>", "        </system.webServer>", "    </location>", "</configuration>", ""]
    return "\r\n".join(lines), planted_line
