"""``GET``/``POST /a/{token}``: the page behind the signed link in every SMS.

``GET`` shows the page (never acknowledges), ``POST`` acknowledges
(``submit_ack(..., via="link")``) and shows the confirmation; the page itself is rendered by
web/ack_page.py. A link reaching a worker that does not own the token's escalation partition
is forwarded to the one that does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import ClientTimeout
from faust.web import Request, Response, View
from yarl import URL

from deadlines.escalation_codec import decode_state
from escalation.inputs import EscalationOff
from escalation.links import ACK_PATH, AckError, token_partition
from escalation.service import NotifierService
from streams.topics import ESCALATIONS_TABLE
from web.ack_page import (
    AckHandlers,
    AckResponse,
    error_response,
    escalation_summary,
    failure_response,
    wants_json,
)
from web.acks import submit_ack
from web.body import BodyRefused, read_body
from web.obligations import Obligations
from web.peers import PEER_TIMEOUT_S, Peers, forwarded, owner_of_partition
from web.responses import refused_body

if TYPE_CHECKING:
    from worker.context import Context

#: Headers of an ack page that a forwarding worker passes on (the rest is hop-by-hop).
ACK_PASS_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Content-Security-Policy",
    "Referrer-Policy",
    "X-Content-Type-Options",
    "X-Robots-Tag",
    "Retry-After",
)


def ack_unavailable(message: str, message_zh: str, as_json: bool) -> AckResponse:
    """503 (retry): the worker that can answer the link is not known or not ready."""
    return failure_response(503, "unavailable", message, message_zh, as_json)


def respond(view: View, r: AckResponse) -> Response:
    headers = {**r.headers, "Content-Type": f"{r.content_type}; charset=utf-8"}
    return view.bytes(r.body, status=r.status, headers=headers)


class AckLinks:
    """The page's work: where the link's escalation lives, and the page's data from it."""

    def __init__(self, ctx: Context, peers: Peers, obligations: Obligations) -> None:
        self.ctx = ctx
        self.peers = peers
        self.obligations = obligations
        self.handlers = AckHandlers(
            ctx.notifier.ack_secrets if ctx.notifier is not None else (),
            lambda ref: self.service().runtime.refs(ref),
            self.acknowledge,
            load_obligation=self.load_obligation,
            load_escalation=self.load_escalation,
            title_for=self.title_for,
        )

    def service(self) -> NotifierService:
        service = self.ctx.notifier
        if service is None:
            raise EscalationOff("escalation is off (no roster)")
        return service

    async def load_obligation(self, obligation_id: str) -> dict[str, Any] | None:
        found = await self.obligations.find(obligation_id)
        notifier = self.ctx.notifier
        if found is not None and notifier is not None:
            unit = notifier.roster.units.get(str(found.get("unit")))
            if unit is not None and unit.name:
                found = {**found, "unit_name": unit.name}
        return found

    async def load_escalation(self, obligation_id: str) -> dict[str, Any] | None:
        raw = self.service().table.get(obligation_id.encode())
        return None if raw is None else escalation_summary(decode_state(raw))

    async def acknowledge(self, obligation_id: str, level: int, person: str, at: int) -> None:
        if obligation_id.encode() not in self.service().table:
            raise LookupError(obligation_id)
        await submit_ack(self.ctx, obligation_id, level, person, at, via="link")

    def title_for(self, rule_id: str) -> str | None:
        rules = self.ctx.book.find(rule_id)
        return rules[0].title if rules else None

    async def forward(self, view: View, http: Any, dest: URL, method: str) -> Response:
        """The answer of the worker that owns the link's escalation partition."""
        url = http.url.with_host(dest.host).with_port(dest.port)
        headers = self.peers.headers(method, url)
        if http.headers.get("Accept"):
            headers["Accept"] = http.headers["Accept"]
        timeout = ClientTimeout(total=PEER_TIMEOUT_S)
        async with self.ctx.app.http_client.request(
            method, url, headers=headers, timeout=timeout
        ) as response:
            body = await response.read()
            passed = {k: response.headers[k] for k in ACK_PASS_HEADERS if k in response.headers}
            return view.bytes(body, status=response.status, headers=passed)

    async def elsewhere(self, view: View, http: Any, partition: int, method: str) -> Response:
        """The link's escalation partition is another worker's: forward, or 503."""
        as_json = wants_json(http.headers.get("Accept"))
        app = self.ctx.app
        try:
            dest = owner_of_partition(app.router.table_metadata(ESCALATIONS_TABLE), partition)
        except KeyError:
            dest = None
        if forwarded(http.headers) or dest is None or self.peers.is_here(dest):
            return respond(
                view,
                ack_unavailable(
                    "the worker that holds this link's escalation is not known yet; "
                    "try again shortly",
                    "系统正在切换,请稍后重试",
                    as_json,
                ),
            )
        try:
            return await self.forward(view, http, dest, method)
        except Exception as exc:  # the owner did not answer
            app.log.warning(f"govclock: ack link forward to {dest} failed: {exc!r}")
            return respond(
                view,
                ack_unavailable(
                    "the worker that holds this link's escalation did not answer; "
                    "try again shortly",
                    "暂时无法处理,请稍后重试",
                    as_json,
                ),
            )

    async def page(self, view: View, http: Any, token: str, method: str) -> Response:
        """``GET``/``POST /a/{token}``."""
        ctx = self.ctx
        as_json = wants_json(http.headers.get("Accept"))
        if method == "POST":  # a form with no fields: read (and bound) it all the same
            try:
                await read_body(http)
            except BodyRefused as exc:
                return refused_body(ctx, view, exc)
        if ctx.notifier is None:
            return respond(
                view,
                failure_response(
                    404,
                    "escalation_off",
                    "escalation is off on this monitor (no roster)",
                    "本系统未开启催办",
                    as_json,
                ),
            )
        try:
            partition = token_partition(token)
        except AckError as exc:
            return respond(view, error_response(exc, as_json))
        if partition < ctx.settings.partitions and not self.peers.owns_escalation(partition):
            return await self.elsewhere(view, http, partition, method)
        if not ctx.notifier.runtime.restored:
            return respond(
                view,
                ack_unavailable(
                    "recovering; try again shortly", "系统正在恢复,请稍后重试", as_json
                ),
            )
        now = int(time.time())
        accept = http.headers.get("Accept")
        if method == "POST":
            return respond(view, await self.handlers.post(token, now=now, accept=accept))
        return respond(view, await self.handlers.get(token, now=now, accept=accept))


def register(ctx: Context, peers: Peers, obligations: Obligations) -> None:
    links = AckLinks(ctx, peers, obligations)

    @ctx.app.page(ACK_PATH + "{token}")
    class AckLinkView(View):
        """The acknowledgement page: ``GET`` shows it (never acknowledges), ``POST``
        acknowledges (``submit_ack(..., via="link")``) and shows the confirmation."""

        async def get(self, request: Request, token: str) -> Response:
            return await links.page(self, request, token, "GET")

        async def post(self, request: Request, token: str) -> Response:
            return await links.page(self, request, token, "POST")
