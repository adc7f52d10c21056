"""Raw evidence lines are fetched by physical line number, however the file is cut into chunks."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from exhunt import evidence

line_text = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"."))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(line_text, min_size=1, max_size=40),
    st.booleans(),
    st.sets(st.integers(1, 45), max_size=8),
    st.integers(1, 64),
)
def test_numbered_lines_match_a_plain_enumeration(lines, final_break, wanted, chunk):
    data = b"\n".join(lines) + (b"\n" if final_break else b"")
    pieces = data.split(b"\n")
    if pieces[-1] == b"":  # after the last line break (or in an empty file) there is no line
        pieces.pop()
    expected = [(n, raw) for n, raw in enumerate(pieces, 1) if n in wanted]
    old = evidence.FETCH_CHUNK
    evidence.FETCH_CHUNK = chunk
    try:
        got = list(evidence._numbered_lines(io.BytesIO(data), wanted))
    finally:
        evidence.FETCH_CHUNK = old
    assert got == expected
