"""The log columns the analytics read, kept in the projected wide tables without `--case` too.

Per table, so that HttpProxy does not keep its long GenericInfo column only because EWS needs its own.
The cost is measured in docs/research/mailbox-access.md.
"""

from __future__ import annotations

from exhunt.families import CMDLET_FIELDS, CMDLET_SOURCE, columns_read, family

RPS = family("rps_cmdlet")

ANALYTICS_COLUMNS: dict[str, frozenset[str]] = {  # case table -> columns
    family("httpproxy").table: frozenset({
        "AuthenticatedUser", "AnchorMailbox", "RoutingHint", "ClientIpAddress", "UserAgent", "Protocol",
        "ProtocolAction", "UrlStem", "HttpStatus", "ResponseBytes", "RequestId",
    }),
    family("ews").table: frozenset({
        "RequestId", "AuthenticatedUser", "ClientIpAddress", "UserAgent", "SoapAction", "HttpStatus",
        "ResponseSize", "ImpersonatedUser", "ProxyAsUser", "ActAsUser", "GenericInfo",
    }),
    # the cmdlet union's fields (name, parameters, caller, result), which the mailbox analytics read
    RPS.table: frozenset({"ClientIpAddress"}.union(*(columns_read(RPS, name, CMDLET_SOURCE) for name in CMDLET_FIELDS))),
}  # fmt: skip
