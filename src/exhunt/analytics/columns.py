"""The log columns the analytics read, kept in the projected wide tables without `--case` too.

Per table, so that HttpProxy does not keep its long GenericInfo column only because EWS needs its own.
The cost is measured in docs/research/mailbox-access.md.
"""

from __future__ import annotations

from exhunt.families import family

ANALYTICS_COLUMNS: dict[str, frozenset[str]] = {  # case table -> columns
    family("httpproxy").table: frozenset({
        "AuthenticatedUser", "AnchorMailbox", "RoutingHint", "ClientIpAddress", "UserAgent", "Protocol",
        "ProtocolAction", "UrlStem", "HttpStatus", "ResponseBytes", "RequestId",
    }),
    family("ews").table: frozenset({
        "RequestId", "AuthenticatedUser", "ClientIpAddress", "UserAgent", "SoapAction", "HttpStatus",
        "ResponseSize", "ImpersonatedUser", "ProxyAsUser", "ActAsUser", "GenericInfo",
    }),
    family("rps_cmdlet").table: frozenset({
        "CommandName", "Cmdlet", "Parameters", "AuthenticatedUser", "ClientIpAddress", "ExecutionResult",
    }),
}  # fmt: skip
