"""Hypothesis strategies for hostile request bodies: what a fuzzer throws at the HTTP layer.

Bodies are built as bytes, not through ``json.dumps``, so they can hold what a JSON encoder
would never write: lone surrogate escapes, NUL, nesting thousands deep, numbers with
thousands of digits, invalid UTF-8, truncations of valid events.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

VALID_EVENT: dict[str, Any] = {
    "event_id": "fz-1",
    "type": "document.published",
    "unit": "sh-gov",
    "publication_id": "p-1",
    "published_at": "2026-03-09T10:00:00+08:00",
    "kind": "news",
    "channel": "portal",
    "url": "https://www.sh.example/a.html",
}

#: Fragments a fuzzer learns to love.
NASTY_STRINGS = [
    "\\ud800",
    "\\udfff",
    "\\ud83d\\ude00",
    "\\u0000",
    "a\\u0000b",
    "\\u202e",
    "\\ufeff",
    "臺北",
    "",
    " ",
    "9" * 5000,
]
NASTY_NUMBERS = ["1" + "0" * 5000, "1e999", "-1e999", "NaN", "Infinity", "-0", "1.5", "2e3"]
NASTY_TIMES = [
    "1800-01-01",
    "2099-12-31T00:00:00+08:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31",
    "2026-02-30",
    "2026-03-09T25:00:00+08:00",
    "2026-03-09T10:00:00+99:00",
]


def _json_string(text: str) -> bytes:
    return b'"' + text.encode("utf-8", "surrogatepass") + b'"'


scalars = st.one_of(
    st.sampled_from(NASTY_STRINGS).map(_json_string),
    st.sampled_from(NASTY_TIMES).map(_json_string),
    st.sampled_from(NASTY_NUMBERS).map(str.encode),
    st.sampled_from([b"null", b"true", b"false", b"{}", b"[]"]),
    st.text(max_size=30).map(lambda t: json.dumps(t).encode()),
    st.integers().map(lambda i: str(i).encode()),
)


@st.composite
def mutated_event(draw: st.DrawFn) -> bytes:
    """A valid event with fields replaced by hostile values, dropped or added."""
    fields = {k: json.dumps(v).encode() for k, v in VALID_EVENT.items()}
    for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=4)):
        fields[key] = draw(scalars)
    for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)):
        fields.pop(key, None)
    if draw(st.booleans()):
        fields[draw(st.sampled_from(["refs", "extra", "title", "\\ud800"]))] = draw(scalars)
    inner = b",".join(_json_string(k) + b":" + v for k, v in fields.items())
    return b"{" + inner + b"}"


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=500, max_value=100_000))
    opener = draw(st.sampled_from([b"[", b'{"a":']))
    closed = draw(st.booleans())
    closer = b"]" if opener == b"[" else b"}"
    return opener * depth + (b"1" + closer * depth if closed else b"")


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    body = json.dumps(VALID_EVENT).encode()
    return body[: draw(st.integers(min_value=0, max_value=len(body) - 1))]


def _ndjson(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


bodies = st.one_of(
    mutated_event(),
    deep(),
    truncated(),
    scalars,
    st.binary(max_size=300),
    st.lists(st.one_of(mutated_event(), truncated(), scalars), min_size=1, max_size=5).map(_ndjson),
    st.sampled_from(
        [
            b"\xff\xfe{}",
            b"\xef\xbb\xbf" + json.dumps(VALID_EVENT).encode(),
            b"<?xml version='1.0'?><alert/>",
            b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>" * 3000,
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>',
        ]
    ),
)
