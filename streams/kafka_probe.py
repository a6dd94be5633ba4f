"""A minimal Kafka client: one Metadata v2 request, to tell whether (and which) broker answers.

:func:`metadata_probe` is how the embedded broker's start knows *its* tansu is ready (by the
cluster id) and how tests and tools check a port without a full Kafka client.
"""

from __future__ import annotations

import secrets
import socket
import struct
from typing import Any

__all__ = ["metadata_probe"]


def _kafka_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return text


def metadata_probe(
    host: str, port: int, timeout: float = 1.0
) -> tuple[str | None, list[tuple[str, int]]]:
    """Send a Kafka Metadata v2 request for no topics; ``(cluster id, [(host, port)] of the
    advertised brokers)``. Raises OSError if nothing answers, ValueError if the answer is
    not Kafka."""
    correlation = secrets.randbits(31)
    body = struct.pack(">hhi", 3, 2, correlation) + _kafka_string("govclock-probe")
    body += struct.pack(">i", 0)  # topics: empty array = none
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(struct.pack(">i", len(body)) + body)
        header = b""
        while len(header) < 4:
            chunk = conn.recv(4 - len(header))
            if not chunk:
                raise ConnectionResetError("closed before answering")
            header += chunk
        (size,) = struct.unpack(">i", header)
        if not 0 < size < 1 << 20:
            raise ValueError(f"not a Kafka response (size {size})")
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionResetError("closed mid-response")
            data += chunk
    try:
        r = _Reader(data)
        if r.take(">i") != correlation:
            raise ValueError("correlation id mismatch")
        brokers = []
        for _ in range(r.take(">i")):
            r.take(">i")  # node id
            b_host = r.string() or ""
            b_port = r.take(">i")
            r.string()  # rack
            brokers.append((b_host, b_port))
        cluster_id = r.string()
    except (struct.error, UnicodeDecodeError):
        raise ValueError("not a Kafka Metadata v2 response") from None
    return cluster_id, brokers
