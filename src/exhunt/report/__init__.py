"""Reports and exports of a scan result: HTML, Timesketch JSONL, ECS NDJSON, STIX 2.1, CSV.

Each module has a `write(doc, out)` registered in `exhunt.writers.WRITERS`; all read the JSON
result document (`docs/json-schema.md`) and treat keys it lacks as not computed.
"""
