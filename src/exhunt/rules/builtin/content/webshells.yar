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
