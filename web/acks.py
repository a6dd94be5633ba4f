"""``POST /v1/obligations/{id}/ack`` and ``GET /v1/obligations/{id}/escalation``.

An ack (``{"level": 1, "person": "li"}``) is answered 202 once the broker has it in the
escalation-inputs topic (404 when the obligation has no escalation); the worker that owns
the obligation's escalation applies it (docs/escalation.md, "The live notifier"). Every other
route that acknowledges (the SMS reply, the signed link) sends through :func:`submit_ack`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from escalation.inputs import (
    SUBMIT_TIMEOUT_S,
    EscalationOff,
    ack_input,
    check_ack,
    delivery_input,
    obligation_of,
)
from escalation.service import NotifierService
from streams.topics import ESCALATIONS_TABLE, escalation_partition
from web.body import BodyRefused, read_body
from web.peers import Peers, forwarded
from web.responses import Refused, broker_unavailable, refused_body

if TYPE_CHECKING:
    from worker.context import Context


async def _produce(ctx: Context, key: bytes | None, value: bytes, partition: int) -> None:
    service = ctx.notifier
    if service is None:
        raise EscalationOff("escalation is off on this worker (no GOVCLOCK_ROSTER_FILE)")
    future = await service.inputs.send(key=key, value=value, partition=partition)
    await asyncio.wait_for(future, timeout=SUBMIT_TIMEOUT_S)


async def submit_ack(
    ctx: Context, obligation_id: str, level: int, person: str, at: int, *, via: str = "api"
) -> None:
    """Acknowledge an obligation's escalation for ``level`` by roster person ``person`` at
    ``at`` (epoch seconds). Returns once the broker has the record; the notifier that owns
    the obligation applies it (during a breach any ack stops repeats and escalation).

    Raises ValueError (bad level or person), :class:`EscalationOff`, or the broker's error /
    ``TimeoutError`` (then nothing is known: retrying is harmless, acks are idempotent)."""
    value = ack_input(obligation_id, level, person, at, via)
    partition = escalation_partition(obligation_id, ctx.settings.partitions)
    await _produce(ctx, obligation_id.encode(), value, partition)


async def submit_delivery(
    ctx: Context,
    partition: int,
    key: str | None,
    sid: str | None,
    status: str,
    error_code: int | None,
    at: int,
) -> None:
    """A delivery report for the notifier of ``partition`` (the obligation's, when ``key`` is
    known); returns once the broker has it."""
    value = delivery_input(key, sid, status, error_code, at)
    record_key = obligation_of(key).encode() if key else None
    await _produce(ctx, record_key, value, partition)


def parse_ack(body: bytes, service: NotifierService) -> tuple[int, str]:
    """``(level, person)`` of an ack request's JSON body ``{"level": 1, "person": "li"}``
    (``person_id`` is accepted too); raises :class:`Refused` (400) naming the field."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Refused(400, 'expected a JSON object {"level": 1, "person": "<roster id>"}')
    level, person = data.get("level"), data.get("person", data.get("person_id"))
    try:
        check_ack(level, person)
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    assert isinstance(level, int) and isinstance(person, str)
    if person not in service.roster.people:
        raise Refused(400, f"person: {person!r} is not in the roster")
    return level, person


class Acks:
    """The two routes' work."""

    def __init__(self, ctx: Context, peers: Peers) -> None:
        self.ctx = ctx
        self.peers = peers

    def owns(self, obligation_id: str) -> bool:
        p = escalation_partition(obligation_id, self.ctx.settings.partitions)
        return self.peers.owns_escalation(p)

    async def forward(self, view: View, http: Any, obligation_id: str, body: bytes) -> Any:
        """The response of the worker that owns the obligation (POST with its body; Faust's
        router forwards no body), or None when that is this worker or not known."""
        app = self.ctx.app
        try:
            dest = app.router.key_store(ESCALATIONS_TABLE, obligation_id.encode())
        except KeyError:
            return None
        if self.peers.is_here(dest):
            return None
        url = http.url.with_host(dest.host).with_port(dest.port)
        headers = self.peers.headers("POST", url, **{"Content-Type": "application/json"})
        async with app.http_client.post(url, data=body, headers=headers) as response:
            return view.bytes(
                await response.read(),
                content_type=response.content_type,
                status=response.status,
            )

    async def ack(self, view: View, http: Any, obligation_id: str) -> Response:
        """``POST /v1/obligations/{obligation_id}/ack``."""
        ctx = self.ctx
        service = ctx.notifier
        if service is None:
            return view.json({"error": "escalation is off (no roster)"}, status=404)
        try:
            body = await read_body(http)
        except BodyRefused as exc:
            return refused_body(ctx, view, exc)
        try:
            level, person = parse_ack(body, service)
        except Refused as exc:
            return view.json({"error": exc.message}, status=exc.status)
        if self.owns(obligation_id):
            if not service.runtime.restored:
                return view.json({"error": "recovering; retry"}, status=503)
            if obligation_id.encode() not in service.table:
                return view.json(
                    {"error": f"no escalation for obligation {obligation_id!r}"}, status=404
                )
        elif not forwarded(http.headers):
            try:
                passed = await self.forward(view, http, obligation_id, body)
            except Exception as exc:  # the owner did not answer: take it here
                ctx.app.log.warning(f"govclock: ack forward failed ({exc!r}); sending it here")
                passed = None
            if passed is not None:
                return passed  # type: ignore[no-any-return]
        try:
            await submit_ack(ctx, obligation_id, level, person, int(time.time()), via="api")
        except EscalationOff as exc:
            return view.json({"error": str(exc)}, status=404)
        except Exception as exc:
            return broker_unavailable(view, exc)
        return view.json(
            {"obligation_id": obligation_id, "level": level, "person": person}, status=202
        )

    async def state(self, view: View, request: Request, obligation_id: str) -> Response:
        """``GET /v1/obligations/{obligation_id}/escalation``."""
        service = self.ctx.notifier
        if service is None:
            return view.json({"error": "escalation is off (no roster)"}, status=404)
        key = obligation_id.encode()
        try:
            response: Response = await self.ctx.app.router.route_req(
                ESCALATIONS_TABLE, key, view.web, request
            )
            return response
        except SameNode:
            pass
        except ServiceUnavailable:
            return view.json({"error": "the owning worker is not known yet"}, status=503)
        raw = service.table.get(key)
        if raw is None:
            return view.json({"error": f"no escalation for {obligation_id!r}"}, status=404)
        return view.json(service.runtime.view(raw))


def register(ctx: Context, peers: Peers) -> None:
    acks = Acks(ctx, peers)

    @ctx.app.page("/v1/obligations/{obligation_id}/ack")
    class AckView(View):
        """``{"level": 1, "person": "li"}``: 202 once the broker has the ack."""

        async def post(self, request: Request, obligation_id: str) -> Response:
            return await acks.ack(self, request, obligation_id)

    @ctx.app.page("/v1/obligations/{obligation_id}/escalation")
    class EscalationView(View):
        """The obligation's escalation: stage, pages and their delivery, acks, audit log."""

        async def get(self, request: Request, obligation_id: str) -> Response:
            return await acks.state(self, request, obligation_id)
