"""Reading a saved case file: the result document a scan stored in its `meta` table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from exhunt.case import CaseReader
from exhunt.errors import InputError


def load_result(path: Path) -> dict[str, Any]:
    """The scan result stored in an exhunt case file; InputError when the file is not one."""
    if not path.is_file():
        raise InputError(f"no such case file: {path}")
    try:
        case = CaseReader.open_saved(path)
        try:
            result = case.meta("result")
        finally:
            case.close()
    except duckdb.Error as exc:
        raise InputError(f"{path}: not an exhunt case file ({str(exc).splitlines()[0][:200]})") from None
    if result is None:
        raise InputError(f"{path}: the case holds no result (written by an older exhunt?)")
    return result  # type: ignore[no-any-return]
