"""Twilio's webhooks: delivery reports (``POST /v1/channels/twilio/status``) and SMS replies
(``POST /v1/channels/twilio/inbound``), plus the internal call that finds a reply's page.

Both webhooks are form-encoded and signed with the Twilio auth token over the configured
public URL. A delivery report goes to the notifier of the obligation's escalation partition.
An SMS reply "1" or "确认" acknowledges the sender's most recent unacknowledged breach page,
found by asking every worker (``POST /v1/internal/reply-candidates``); docs/twilio.md,
"Acknowledging by SMS reply".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from faust.web import Request, Response, View
from yarl import URL

from channels.twilio_sms import (
    INBOUND_PATH,
    STATUS_CALLBACK_PATH,
    InboundMessage,
    StatusCallback,
    parse_inbound_message,
    parse_status_callback,
    verify_webhook,
)
from deadlines.escalation_codec import decode_state
from deadlines.roster import mask_phone
from escalation import replies
from escalation.inputs import obligation_of
from escalation.links import AckError, token_partition
from escalation.links import verify as verify_token
from escalation.replies import (
    ReplyDecision,
    ReplyLookup,
    decide_reply,
    interpret_reply,
    merge_reply_answers,
)
from escalation.service import NotifierService
from streams.topics import ESCALATION_INPUTS, ESCALATIONS_TABLE, escalation_partition
from web.acks import submit_ack, submit_delivery
from web.body import BodyRefused, read_body
from web.peers import Peers
from web.responses import Refused, broker_unavailable, refused_body

if TYPE_CHECKING:
    from worker.context import Context

log = logging.getLogger("govclock.web")

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
TWILIO_SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
#: A status callback can beat the send's bookkeeping (the SID is recorded once Twilio's
#: answer is back): look the SID up again after these pauses before giving up.
SID_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8)
#: Internal: one worker asks another for its unacknowledged pages to some people (JSON POST).
REPLY_CANDIDATES_PATH = "/v1/internal/reply-candidates"
#: How long a worker waits for the others' candidates (Twilio gives a webhook 15 s).
REPLY_PEER_TIMEOUT_S = 5.0
#: MessageSids answered lately (per worker): a webhook delivered twice acknowledges once.
REPLIES_REMEMBERED = 1000


def verified_form(
    service: NotifierService | None, path_qs: str, body: bytes, headers: Any, what: str
) -> dict[str, str]:
    """The form of a Twilio webhook whose signature checks out against the configured public
    URL (+ ``path_qs``, what Twilio requested) and auth token; raises :class:`Refused` (404
    Twilio not configured, 403 bad or missing signature, 400 not a form)."""
    if service is None or service.twilio_auth_token is None or service.public_url is None:
        raise Refused(
            404,
            f"Twilio {what} need the notifier (GOVCLOCK_ROSTER_FILE), Twilio "
            "(GOVCLOCK_TWILIO_*) and GOVCLOCK_PUBLIC_URL",
        )
    try:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise Refused(400, "the form is not UTF-8") from None
    url = service.public_url + path_qs  # what Twilio requested, as configured
    if not verify_webhook(
        service.twilio_auth_token,
        url,
        form,
        headers.get(TWILIO_SIGNATURE_HEADER),
        signature_settings=headers.get(TWILIO_SIGNATURE_SETTINGS_HEADER),
    ):
        raise Refused(403, "bad or missing X-Twilio-Signature")
    return form


def check_status_callback(
    service: NotifierService | None, path_qs: str, body: bytes, headers: Any
) -> StatusCallback:
    """The report in a Twilio status callback whose signature checks out against the
    configured public URL and auth token; raises :class:`Refused` (404 Twilio not
    configured, 403 bad or missing signature, 400 no SID or status)."""
    form = verified_form(service, path_qs, body, headers, "delivery reports")
    try:
        return parse_status_callback(form)
    except ValueError as exc:
        raise Refused(400, str(exc)) from None


def check_inbound(
    service: NotifierService | None, path_qs: str, body: bytes, headers: Any
) -> InboundMessage:
    """An SMS reply from Twilio's incoming-message webhook, signature checked like a status
    callback's; raises :class:`Refused` (404, 403, 400 no ``From``)."""
    form = verified_form(service, path_qs, body, headers, "incoming messages")
    try:
        return parse_inbound_message(form)
    except ValueError as exc:
        raise Refused(400, str(exc)) from None


async def delivery_target(
    service: NotifierService, report: StatusCallback, hint: str | None, partitions: int
) -> tuple[str | None, int]:
    """``(message key, partition)`` a delivery report goes to: the key from the sent log
    (looked up again briefly if the send has not recorded the SID yet), else the partition
    named in the callback URL (``?p=``; that worker's notifier looks the SID up itself).
    Raises :class:`Refused` (404) for a message nobody here knows of."""
    sent_log = service.sent_log
    for delay in (0.0, *SID_RETRY_DELAYS_S):
        if delay:
            await asyncio.sleep(delay)
        key = sent_log.key_for(report.provider_id) if sent_log is not None else None
        if key is not None:
            return key, escalation_partition(obligation_of(key), partitions)
        if hint is not None and hint.isdigit() and int(hint) < partitions:
            return None, int(hint)
    raise Refused(404, f"no message {report.provider_id} sent from here")


def people_with_phone(service: NotifierService, phone: str) -> list[str]:
    """The roster's people with the number ``phone`` (E.164, as Twilio gives ``From``)."""
    return sorted(p.id for p in service.roster.people.values() if p.phone == phone)


class RecentReplies:
    """The answers to the last few MessageSids (a webhook Twilio delivers twice, or to two
    workers behind a balancer that share nothing, is answered the same on one worker)."""

    def __init__(self, size: int = REPLIES_REMEMBERED) -> None:
        self.size = size
        self._answers: OrderedDict[str, str] = OrderedDict()

    def get(self, sid: str) -> str | None:
        return self._answers.get(sid) if sid else None

    def put(self, sid: str, text: str) -> None:
        if not sid:
            return
        self._answers[sid] = text
        self._answers.move_to_end(sid)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)


def reply_token(service: NotifierService, token: str, now: int) -> dict[str, Any]:
    """A link's claim, verified by the owner of its escalation, or why not."""
    try:
        claim = verify_token(token, service.ack_secrets, now, service.runtime.refs)
    except AckError as exc:
        return {"error": exc.reason}
    except ValueError:  # no secret configured
        return {"error": "unknown"}
    raw = service.table.get(claim.obligation_id.encode())
    if raw is None:
        return {"error": "no_escalation"}
    state = decode_state(raw)
    return {
        "claim": {
            "obligation_id": claim.obligation_id,
            "level": claim.level,
            "person_id": claim.person_id,
            "short_name": state.short_name,
            "subject_id": state.subject_id,
            "stage": state.stage,
        }
    }


class Twilio:
    """The webhooks' work: reports to the notifiers, replies answered and acknowledged."""

    def __init__(self, ctx: Context, peers: Peers) -> None:
        self.ctx = ctx
        self.peers = peers
        self.recent = RecentReplies()
        self.rejected = ctx.metrics.events_rejected

    async def status(self, view: View, http: Any) -> Response:
        """``POST /v1/channels/twilio/status``: 204 once the report is on its way."""
        ctx = self.ctx
        service = ctx.notifier
        try:
            body = await read_body(http)
        except BodyRefused as exc:
            return refused_body(ctx, view, exc)
        try:
            report = check_status_callback(service, http.path_qs, body, http.headers)
            assert service is not None
            key, partition = await delivery_target(
                service, report, http.query.get("p"), ctx.settings.partitions
            )
        except Refused as exc:
            if exc.status == 403:
                self.rejected.labels("signature").inc()
            return view.json({"error": exc.message}, status=exc.status)
        try:
            await submit_delivery(
                ctx,
                partition,
                key,
                report.provider_id,
                report.status,
                report.error_code,
                int(time.time()),
            )
        except Exception as exc:
            return broker_unavailable(view, exc, retry=False)
        return view.bytes(b"", status=204)

    async def inbound(self, view: View, http: Any) -> Response:
        """``POST /v1/channels/twilio/inbound``: TwiML in every case but a bad signature
        (403), an unusable form (400) or Twilio not configured (404)."""
        ctx = self.ctx
        service = ctx.notifier
        try:
            body = await read_body(http)
        except BodyRefused as exc:
            ctx.metrics.sms_reply("bad_request")
            return refused_body(ctx, view, exc)
        try:
            message = check_inbound(service, http.path_qs, body, http.headers)
        except Refused as exc:
            if exc.status == 403:
                self.rejected.labels("signature").inc()
                ctx.metrics.sms_reply("bad_signature")
            elif exc.status == 400:
                ctx.metrics.sms_reply("bad_request")
            return view.json({"error": exc.message}, status=exc.status)
        assert service is not None
        text = await self.answer(service, message)
        return view.bytes(
            replies.twiml(text).encode(),
            status=200,
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )

    def escalation_partitions_here(self) -> list[int]:
        """The escalation partitions this worker answers for (none while recovering)."""
        service = self.ctx.notifier
        if service is None or not service.runtime.restored:
            return []
        return sorted(
            tp.partition
            for tp in self.ctx.app.assignor.assigned_actives()
            if tp.topic == ESCALATION_INPUTS
        )

    def candidates(
        self, people: list[str], since: int, token: str | None, now: int
    ) -> dict[str, Any]:
        """This worker's part: its partitions, the unacknowledged breach pages to ``people``
        sent since ``since`` in them, and the link's claim if its partition is here."""
        service = self.ctx.notifier
        assert service is not None
        mine = self.escalation_partitions_here()
        pages = [
            p.as_json() for p in service.runtime.open_pages(people, since) if p.partition in mine
        ]
        answer: dict[str, Any] = {"partitions": mine, "pages": pages, "token": None}
        if token:
            try:
                at = token_partition(token)
            except AckError as exc:
                answer["token"] = {"error": exc.reason}
                return answer
            if at in mine or (mine and at >= self.ctx.settings.partitions):
                answer["token"] = reply_token(service, token, now)
        return answer

    async def gather(
        self, people: list[str], since: int, token: str | None, now: int
    ) -> ReplyLookup:
        """Every worker's part (this one's directly, the others' over HTTP, at once)."""
        answers: list[Mapping[str, Any]] = [self.candidates(people, since, token, now)]
        peers = self.peers.others(ESCALATIONS_TABLE)
        payload = json.dumps({"people": people, "since": since, "token": token, "now": now})
        results = await asyncio.gather(
            *(
                self.peers.post_json(
                    URL(u).with_path(REPLY_CANDIDATES_PATH), payload.encode(), REPLY_PEER_TIMEOUT_S
                )
                for u in peers
            ),
            return_exceptions=True,
        )
        for url, result in zip(peers, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("SMS reply: %s did not answer: %r", url, result)
            elif isinstance(result, Mapping):
                answers.append(result)
        return merge_reply_answers(answers)

    async def answer(self, service: NotifierService, message: InboundMessage) -> str:
        """Acknowledge what the reply names, if anything; the text to answer with."""
        ctx = self.ctx
        masked = mask_phone(message.from_number)
        known = self.recent.get(message.sid)
        if known is not None:
            ctx.metrics.sms_reply("duplicate")
            log.info("SMS reply %s from %s: answered before", message.sid, masked)
            return known
        people = people_with_phone(service, message.from_number)
        if not people:
            ctx.count("sms_replies_unknown_number")
            ctx.metrics.sms_reply("unknown_number")
            log.info("SMS reply %s from %s: not a roster number", message.sid, masked)
            self.recent.put(message.sid, replies.REPLY_UNKNOWN_NUMBER)
            return replies.REPLY_UNKNOWN_NUMBER
        intent = interpret_reply(message.body)
        now = int(time.time())
        lookup, token_at = ReplyLookup(), None
        if intent.token is not None:
            try:
                token_at = token_partition(intent.token)
            except AckError:
                token_at = None
        if intent.kind == "ack" or token_at is not None:
            since = now - round(ctx.settings.ack_ttl_hours * 3600)
            lookup = await self.gather(people, since, intent.token, now)
        decision = decide_reply(intent, lookup, ctx.settings.partitions, token_at)
        done = ""
        if decision.ack is not None:
            oid, level, person = decision.ack
            try:
                await submit_ack(ctx, oid, level, person, now, via="sms")
                done = f": {oid} level {level} by {person}"
            except Exception as exc:  # broker unavailable: nothing known, a resend is harmless
                log.warning("SMS reply %s: ack of %s not recorded: %r", message.sid, oid, exc)
                decision = ReplyDecision("unavailable", replies.REPLY_UNAVAILABLE)
        ctx.count(f"sms_replies_{decision.outcome}")
        ctx.metrics.sms_reply(decision.outcome)
        log.info(
            "SMS reply %s from %s (%s): %s%s",
            message.sid,
            masked,
            ",".join(people),
            decision.outcome,
            done,
        )
        if decision.outcome != "unavailable":
            self.recent.put(message.sid, decision.text)
        return decision.text

    async def reply_candidates(self, view: View, http: Any) -> Response:
        """``POST /v1/internal/reply-candidates``."""
        if self.ctx.notifier is None:
            return view.json({"error": "escalation is off (no roster)"}, status=404)
        try:
            body = await read_body(http)
        except BodyRefused as exc:
            return refused_body(self.ctx, view, exc)
        try:
            data = orjson.loads(body)
            people = [str(p) for p in data["people"]]
            since, now = int(data["since"]), int(data["now"])
            token = data.get("token")
            if token is not None and not isinstance(token, str):
                raise TypeError("token")
        except (ValueError, KeyError, TypeError) as exc:
            return view.json({"error": f"bad request: {exc!r}"}, status=400)
        return view.json(self.candidates(people, since, token, now))


def register(ctx: Context, peers: Peers) -> None:
    twilio = Twilio(ctx, peers)

    @ctx.app.page(STATUS_CALLBACK_PATH)
    class TwilioStatusView(View):
        """Twilio's status callbacks (form-encoded, signed): 204 once the report is on its
        way to the obligation's notifier."""

        async def post(self, request: Request) -> Response:
            return await twilio.status(self, request)

    @ctx.app.page(INBOUND_PATH)
    class TwilioInboundView(View):
        """Twilio's incoming-message webhook (form-encoded, signed): an SMS reply to the
        Twilio number, answered in TwiML (``<Response><Message>…``)."""

        async def post(self, request: Request) -> Response:
            return await twilio.inbound(self, request)

    @ctx.app.page(REPLY_CANDIDATES_PATH)
    class ReplyCandidatesView(View):
        """Internal (one worker to another): this worker's part of an SMS reply's lookup,
        JSON ``{"people": [...], "since": t, "token": str | null, "now": t}``."""

        async def post(self, request: Request) -> Response:
            return await twilio.reply_candidates(self, request)
