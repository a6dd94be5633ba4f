"""The other workers: who owns a partition, and calling them with the cluster's credentials.

A worker answers what it owns and asks the others for the rest (docs/broker.md, "Queries on
several workers"); a call from one worker to another carries :data:`FORWARDED_HEADER` (the
peer answers from its own state only, never forwards again) and the cluster signature of
web/access.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import ClientTimeout
from yarl import URL

from streams.topics import ESCALATION_INPUTS
from web.access import PeerAuth

if TYPE_CHECKING:
    from worker.context import Context

#: Set on a request one worker sends or forwards to another.
FORWARDED_HEADER = "X-Govclock-Forwarded"
#: How long a worker waits for another (the owner of a link, of an obligation).
PEER_TIMEOUT_S = 10.0


def owner_of_partition(metadata: Any, partition: int) -> URL | None:
    """The web URL of the worker that holds ``partition`` of a table, from Faust's
    ``router.table_metadata(table)`` (``{url: {changelog topic: [partitions]}}``)."""
    for url, topics in (metadata or {}).items():
        for partitions in topics.values():
            if partition in partitions:
                return URL(str(url))
    return None


def partitions_by_url(metadata: Any) -> dict[str, list[int]]:
    """``{worker url: [partitions]}`` of a table, from Faust's ``router.table_metadata``."""
    out: dict[str, list[int]] = {}
    for url, topics in (metadata or {}).items():
        parts = out.setdefault(str(url).rstrip("/"), [])
        for partitions in topics.values():
            parts.extend(int(p) for p in partitions)
        parts.sort()
    return out


def obligation_path(obligation_id: str) -> str:
    """``/v1/obligations/<id>``, percent-encoded (ids hold Chinese, spaces, slashes)."""
    return "/v1/obligations/" + quote(obligation_id, safe=":")


@dataclass
class Peers:
    """This worker's view of the cluster: what it owns, and calls to the other workers."""

    ctx: Context
    auth: PeerAuth

    def is_here(self, url: URL) -> bool:
        here = self.ctx.app.conf.canonical_url
        return (url.host, url.port) == (here.host, here.port)

    def here(self) -> str:
        return str(self.ctx.app.conf.canonical_url).rstrip("/")

    def urls(self, table: str) -> dict[str, list[int]]:
        """``{worker url: [partitions]}`` of ``table`` (empty before any assignment)."""
        try:
            return partitions_by_url(self.ctx.app.router.table_metadata(table))
        except KeyError:
            return {}

    def others(self, table: str) -> list[str]:
        """The URLs of the other workers that hold partitions of ``table``."""
        return [u for u in self.urls(table) if not self.is_here(URL(u))]

    def owns_escalation(self, partition: int) -> bool:
        """This worker holds ``partition`` of the escalation inputs."""
        return any(
            tp.topic == ESCALATION_INPUTS and tp.partition == partition
            for tp in self.ctx.app.assignor.assigned_actives()
        )

    def headers(self, method: str, url: URL, **extra: str) -> dict[str, str]:
        """The headers of a call to a peer: forwarded, signed, and ``extra``."""
        return {**extra, FORWARDED_HEADER: "1", **self.auth.headers(method, url)}

    async def get_json(self, url: URL, timeout_s: float = PEER_TIMEOUT_S) -> Any:
        """The JSON another worker answers for a GET, None unless 200."""
        timeout = ClientTimeout(total=timeout_s)
        headers = self.headers("GET", url)
        async with self.ctx.app.http_client.get(url, timeout=timeout, headers=headers) as r:
            if r.status != 200:
                return None
            return await r.json()

    async def post_json(self, url: URL, payload: bytes, timeout_s: float) -> Any:
        """The JSON another worker answers for a POST of ``payload``; raises unless 200."""
        headers = self.headers("POST", url, **{"Content-Type": "application/json"})
        timeout = ClientTimeout(total=timeout_s)
        client = self.ctx.app.http_client
        async with client.post(url, data=payload, headers=headers, timeout=timeout) as r:
            if r.status != 200:
                raise ValueError(f"HTTP {r.status}")
            return await r.json()

    async def get_part(self, url: URL, timeout_s: float) -> Any:
        """Another worker's JSON for a GET; raises unless 200 (an answer that must come)."""
        timeout = ClientTimeout(total=timeout_s)
        headers = self.headers("GET", url)
        async with self.ctx.app.http_client.get(url, timeout=timeout, headers=headers) as r:
            if r.status != 200:
                raise ValueError(f"HTTP {r.status}")
            return await r.json()


def forwarded(headers: Mapping[str, str]) -> bool:
    """The request came from another worker (answer from this worker's state only)."""
    return bool(headers.get(FORWARDED_HEADER))
