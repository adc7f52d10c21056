"""The W3C sniffer finds a `#Fields: date time` line where the line-anchored pattern finds it."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from exhunt.sources.base import text_head
from exhunt.sources.w3c import W3CSource

# the pattern as a regex anchored on line starts: the reference the faster search must agree with
ANCHORED = re.compile(r"(?:^|\n)\ufeff?#\s?Fields:\s*date time")
PIECES = ["#Fields: date time", "# Fields: date time", "#Fields:date time", "\ufeff", "\n", "x", " ", "#", "Fields:"]


@given(st.lists(st.sampled_from(PIECES), max_size=12))
def test_the_sniffer_agrees_with_the_line_anchored_pattern(pieces: list[str]):
    head = "".join(pieces).encode("utf-8")
    assert W3CSource.sniff(head, "u_ex210303.log") == bool(ANCHORED.search(text_head(head)[:4096]))


def test_a_fields_line_inside_a_line_is_not_a_header():
    assert W3CSource.sniff(b"#Software: x\n#Fields: date time c-ip\n", "a.log")
    assert W3CSource.sniff("\ufeff#Fields: date time c-ip\n".encode(), "a.log")
    assert not W3CSource.sniff(b"note: #Fields: date time c-ip\n", "a.log")
