"""Rule logic that cannot be written as field conditions. Each function is named by a rule's
`python:` key, receives the store and the rule's parameters, and returns the row ids (of the rule
source's table) that match; grouping and evidence then work as for any other rule."""

from __future__ import annotations

from exhunt.case import CaseReader
from exhunt.rules.intrusion_logic import (  # noqa: F401  (named by rules' `python:` keys)
    dcsync_by_account,
    dcsync_by_unknown_computer,
    domain_acl_replication_grant,
    domain_acl_writedacl_grant,
    exchange_machine_ntlm_logon,
    local_account_created,
    network_logon_from_exchange,
    object_acl_takeover,
    remote_interactive_logon_from_exchange,
)
from exhunt.rules.webshell_join import (  # noqa: F401  (named by rules' `python:` keys)
    dormant_webshells,
    missing_script_probes,
    webshell_requests_httpproxy,
    webshell_requests_iis,
)

WEB_FOLDERS = r"\\(FrontEnd\\HttpProxy\\(owa|ecp)\\auth|inetpub\\wwwroot\\aspnet_client)(\\|$)"
OUTLIER_DAYS = 7


def script_time_outliers(case: CaseReader, params: dict[str, str]) -> list[int]:
    """Script files in Exchange web folders written well after the rest of their folder.

    A standard install or update writes a folder's files together; a web shell dropped later stands
    out. Folders with fewer than three files have no "rest" to compare with and are skipped.
    """
    rows = case.fetch(
        f"""
        WITH web AS (
            SELECT rowid AS rid, ext, mtime,
                   regexp_replace(win_path, '\\\\[^\\\\]+$', '') AS folder
            FROM artifacts
            WHERE mtime IS NOT NULL AND regexp_matches(win_path, '{WEB_FOLDERS}', 'i')
        ),
        typical AS (
            SELECT folder, median(epoch(mtime)) AS mid, count(*) AS n FROM web GROUP BY folder
        )
        SELECT web.rid FROM web JOIN typical USING (folder)
        WHERE typical.n >= 3 AND lower(web.ext) IN ('.aspx', '.ashx', '.asp')
          AND epoch(web.mtime) - typical.mid > {OUTLIER_DAYS} * 86400
        """
    )
    return [r[0] for r in rows]
