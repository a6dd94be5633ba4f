"""``POST /v1/events`` and ``POST /v1/hooks/{source}``: events in, journaled, acknowledged.

``POST /v1/events`` takes one JSON event (``application/json``), a batch, one per line
(``application/x-ndjson``), or a CAP alert (``application/cap+xml``). Every event of a
request is validated first: any bad one gets the whole request a 400 naming each bad line and
field, and nothing of it is taken. Then the events are appended to the journal (fsync) and
produced to the ingest topic, and the answer waits for the broker's acknowledgement: a 202
means accepted durably. A broker that does not acknowledge in time gives 503 (the sender
retries; ``event_id`` makes the retry harmless). ``POST /v1/hooks/{source}`` takes a CMS's own
webhook payload (Ghost, Strapi, WordPress) or a CAP alert, turned into events by the source's
adapter (sources/). Signatures: see :mod:`web.signing` and docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View

from config.sources import Source
from schemas.events import EventError, FieldError, decode_event, parse_event
from schemas.times import implausible_times
from sources.common import CAP_CONTENT_TYPES, AdapterError, get_adapter
from web.body import BodyRefused, read_body
from web.responses import broker_unavailable, refused_body
from web.signing import (
    GHOST_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
    verify_ghost,
)

if TYPE_CHECKING:
    from worker.context import Context

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
ACK_TIMEOUT_S = 10.0

#: The timestamps of a validated event that the time policy refuses (schemas/times.py).
TimeCheck = Callable[[Any], list[FieldError]]


def parse_body(
    body: bytes, content_type: str, check: TimeCheck | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The events of a request body and the problems, each with its line and fields
    (``check``: the implausible timestamps of an event, refused like a bad field)."""
    lines = [body] if content_type in JSON_TYPES else body.split(b"\n")
    events: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data, event = decode_event(line)
        except EventError as exc:
            problems.append({"line": number, "errors": [e.model_dump() for e in exc.errors]})
            continue
        implausible = check(event) if check is not None else []
        if implausible:
            problems.append({"line": number, "errors": [e.model_dump() for e in implausible]})
            continue
        events.append(data)
    if not events and not problems:
        problems.append({"line": 1, "errors": [{"field": "(body)", "message": "no events"}]})
    return events, problems


def check_signature(ctx: Context, http: Any, body: bytes) -> Source | None:
    """The verified source of a request (None in the unsigned development set-up);
    raises SignatureError."""
    if not ctx.sources:
        return None
    headers = http.headers
    name = verify(
        {n: src.secrets for n, src in ctx.sources.items()},
        headers.get(SOURCE_HEADER),
        headers.get(TIMESTAMP_HEADER),
        headers.get(SIGNATURE_HEADER),
        body,
        int(time.time()),
    )
    return ctx.sources[name]


def check_ghost(source: Source, header: str | None, body: bytes) -> None:
    """Ghost signs with its own header; any of the source's secrets (rotation) may match."""
    error = SignatureError("no secret configured")
    for secret in source.secrets:
        try:
            verify_ghost(secret, header, body, now=int(time.time()))
            return
        except SignatureError as exc:
            error = exc
    raise error


class Intake:
    """What both routes do with a body: check it, turn it into events, take them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rejected = ctx.metrics.events_rejected
        self.time_policy = ctx.settings.time_policy

    def time_check(self, event: Any) -> list[FieldError]:
        return implausible_times(event, int(time.time()), self.time_policy)

    async def accept(
        self, view: View, events: list[dict[str, Any]], source: str = "unsigned"
    ) -> Response:
        """Journal, produce, and answer 202 only once the broker has acknowledged."""
        ctx = self.ctx
        ctx.journal.append(events)
        try:
            futures = [
                await ctx.events.send(
                    key=e["event_id"].encode(),
                    value=json.dumps(e, ensure_ascii=False).encode(),
                )
                for e in events
            ]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=ACK_TIMEOUT_S)
        except Exception as exc:  # the broker did not take it: the sender retries
            ctx.count("requests_unavailable")
            return broker_unavailable(view, exc)
        ctx.count("requests_accepted")
        ctx.count("events_accepted", len(events))
        ctx.metrics.source_last_event.labels(source).set(time.time())
        return view.json(
            {"accepted": len(events), "event_ids": [e["event_id"] for e in events]},
            status=202,
        )

    def unauthorized(self, view: View, exc: SignatureError) -> Response:
        self.ctx.count("requests_unauthorized")
        self.rejected.labels("signature").inc()
        return view.json({"error": f"signature: {exc}"}, status=401)

    def adapted(
        self, view: View, adapter: str, body: bytes, unit: str | None, source: str
    ) -> list[dict[str, Any]] | Response:
        """The events an adapter makes of a payload, each checked like a posted event."""
        if not unit:
            return view.json(
                {
                    "error": f"{adapter} payloads carry no unit: configure the source's unit "
                    "(or pass ?unit= in the unsigned development set-up)"
                },
                status=400,
            )
        try:
            events = get_adapter(adapter)(
                body, unit=unit, source=source, received_at=int(time.time())
            )
        except AdapterError as exc:
            self.ctx.count("requests_rejected")
            return view.json({"error": str(exc)}, status=400)
        problems = []
        for i, e in enumerate(events, start=1):
            try:
                implausible = self.time_check(parse_event(e))
            except EventError as exc:
                problems.append({"line": i, "errors": [x.model_dump() for x in exc.errors]})
                continue
            if implausible:
                problems.append({"line": i, "errors": [x.model_dump() for x in implausible]})
        if problems:
            return view.json({"error": "invalid events", "problems": problems}, status=400)
        return events

    async def events(self, view: View, http: Any) -> Response:
        """``POST /v1/events``."""
        ctx = self.ctx
        content_type = (http.content_type or "").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES + NDJSON_TYPES + CAP_CONTENT_TYPES:
            self.rejected.labels("content_type").inc()
            return view.json(
                {
                    "error": f"unsupported content type {content_type!r}; send "
                    "application/json, application/x-ndjson or application/cap+xml"
                },
                status=415,
            )
        try:
            body = await read_body(http)
        except BodyRefused as exc:
            return refused_body(ctx, view, exc)
        try:
            source = check_signature(ctx, http, body)
        except SignatureError as exc:
            return self.unauthorized(view, exc)
        name = source.name if source else "unsigned"
        if content_type in CAP_CONTENT_TYPES:
            unit = source.unit if source else http.query.get("unit")
            result = self.adapted(view, "cap", body, unit, name)
            return await self.accept(view, result, name) if isinstance(result, list) else result
        events, problems = parse_body(body, content_type, self.time_check)
        if problems:
            ctx.count("requests_rejected")
            self.rejected.labels("invalid_event").inc()
            return view.json({"error": "invalid events", "problems": problems}, status=400)
        return await self.accept(view, events, name)

    async def hook(self, view: View, http: Any, source_name: str) -> Response:
        """``POST /v1/hooks/{source_name}``."""
        ctx = self.ctx
        source = ctx.sources.get(source_name)
        if source is None or source.adapter is None:
            return view.json({"error": f"no adapter source {source_name!r}"}, status=404)
        try:
            body = await read_body(http)
        except BodyRefused as exc:
            return refused_body(ctx, view, exc)
        try:
            if source.adapter == "ghost":
                check_ghost(source, http.headers.get(GHOST_SIGNATURE_HEADER), body)
            else:
                check_signature(ctx, http, body)
        except SignatureError as exc:
            return self.unauthorized(view, exc)
        result = self.adapted(view, source.adapter, body, source.unit, source.name)
        if isinstance(result, list):
            return await self.accept(view, result, source.name)
        return result


def register(ctx: Context) -> None:
    intake = Intake(ctx)

    @ctx.app.page("/v1/events")
    class EventsView(View):
        async def post(self, request: Request) -> Response:
            return await intake.events(self, request)

    @ctx.app.page("/v1/hooks/{source_name}")
    class HooksView(View):
        """A CMS's own webhook payload (Ghost, Strapi, WordPress) or a CAP alert, turned
        into events by the source's adapter."""

        async def post(self, request: Request, source_name: str) -> Response:
            return await intake.hook(self, request, source_name)
