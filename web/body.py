"""Reading a request body whole, up to a limit, over a socket that delivers it in pieces.

aiohttp's ``StreamReader.read(n)`` returns whatever has arrived so far, not ``n`` bytes, so
one read is not the body. :func:`read_body` reads until the end of the body, refuses with
413 as soon as the limit is passed (a ``Content-Length`` over the limit is refused before a
byte is read) and never holds more than the limit plus one piece; a body that ends before
its ``Content-Length`` (the client went away) is refused with 400, never half-taken.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

#: The largest body any route takes (events, webhooks, Twilio callbacks, acks).
MAX_BODY_BYTES = 1 << 20  # 1 MiB
#: The most read from the socket at once.
PIECE_BYTES = 1 << 16


class BodyRefused(Exception):
    """A body not taken: ``status`` 413 (over the limit) or 400 (ended early, broken)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(http: Any, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body of aiohttp request ``http``; raises :class:`BodyRefused`."""
    declared: int | None = http.content_length
    if declared is not None and declared > limit:
        raise BodyRefused(413, f"body of {declared} bytes is over the limit of {limit} bytes")
    pieces: list[bytes] = []
    size = 0
    try:
        while True:
            piece: bytes = await http.content.read(min(PIECE_BYTES, limit + 1 - size))
            if not piece:
                break
            size += len(piece)
            if size > limit:
                raise BodyRefused(413, f"body over the limit of {limit} bytes")
            pieces.append(piece)
    except (ConnectionError, HttpProcessingError, asyncio.IncompleteReadError) as exc:
        raise BodyRefused(
            400, f"the body ended early after {size} bytes ({type(exc).__name__})"
        ) from None
    if declared is not None and size != declared:
        raise BodyRefused(
            400, f"the body ended early: {size} of the {declared} bytes Content-Length gives"
        )
    return b"".join(pieces)
