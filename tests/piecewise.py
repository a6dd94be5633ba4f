"""HTTP over a real socket the way a network delivers it: the body in pieces, with pauses.

``http.client`` and aiohttp's client write a small body in one go, so a server that takes one
read as the body passes with them. :func:`send` writes the request head, then the body in
the given piece sizes with a pause between pieces, then reads the whole answer.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any


def pieces_of(body: bytes, sizes: Iterable[int]) -> list[bytes]:
    """``body`` cut in pieces of ``sizes`` (cycled), the last one what is left."""
    sizes = [max(1, s) for s in sizes]
    out, at, i = [], 0, 0
    while at < len(body):
        size = sizes[i % len(sizes)]
        out.append(body[at : at + size])
        at += size
        i += 1
    return out


def head(
    method: str, path: str, headers: Mapping[str, str], length: int | None, chunked: bool
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_answer(sock: socket.socket) -> tuple[int, Any]:
    """``(status, parsed JSON or text)`` of an HTTP/1.1 answer with ``Connection: close``."""
    data = b""
    while True:
        got = sock.recv(65536)
        if not got:
            break
        data += got
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_bytes.lower():
        body = dechunk(body)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def send(
    port: int,
    path: str,
    body: bytes,
    *,
    content_type: str,
    sizes: Iterable[int] = (16 * 1024,),
    pause: float = 0.002,
    headers: Mapping[str, str] | None = None,
    chunked: bool = False,
    method: str = "POST",
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """Send one request with its body in pieces; the answer."""
    all_headers = {"Content-Type": content_type, **(headers or {})}
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head(method, path, all_headers, len(body), chunked))
        for piece in pieces_of(body, sizes):
            frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
            sock.sendall(frame)
            if pause:
                time.sleep(pause)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        return read_answer(sock)


def send_and_vanish(
    port: int,
    path: str,
    body: bytes,
    *,
    content_type: str,
    sent_fraction: float = 0.5,
    headers: Mapping[str, str] | None = None,
    chunked: bool = False,
) -> None:
    """Announce ``body`` whole, send part of it, and close the socket (a client gone)."""
    all_headers = {"Content-Type": content_type, **(headers or {})}
    cut = int(len(body) * sent_fraction)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head("POST", path, all_headers, len(body), chunked))
        for piece in pieces_of(body[:cut], (8192,)):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            time.sleep(0.001)
        time.sleep(0.05)
        sock.shutdown(socket.SHUT_RDWR)
