"""HTTP: event ingestion for CMS and incident systems, the obligations API, health.

``POST /v1/events`` takes one JSON event (``application/json``) or a batch, one per line
(``application/x-ndjson``). Every event of a request is validated first: any bad one gets
the whole request a 400 naming each bad line and field, and nothing of it is taken. Then
the events are appended to the journal (fsync) and produced to the ingest topic, and the
answer waits for the broker's acknowledgement: a 202 means accepted durably. A broker that
does not acknowledge in time gives 503 (the sender retries; ``event_id`` makes the retry
harmless). Signatures: see :mod:`streams.signing` and docs/integrations.md.

Queries (docs/broker.md, "Queries on several workers"): ``GET /v1/obligations`` answers for
the whole cluster (this worker's partitions, the others asked with ``?local=1``, merged;
``partial`` and ``missing_partitions`` when a worker does not answer);
``GET /v1/obligations/{id}`` is answered by the worker that owns the obligation's subject.

Escalation (docs/escalation.md, "The live notifier"): ``POST /v1/obligations/{id}/ack``
acknowledges (202 once the broker has the ack; 404 when the obligation has no escalation),
``GET /v1/obligations/{id}/escalation`` shows its state (numbers masked),
``POST /v1/channels/twilio/status`` takes Twilio's signed delivery reports,
``POST /v1/channels/twilio/inbound`` Twilio's signed incoming messages (an SMS reply "1" or
"确认" acknowledges the sender's most recent unacknowledged breach page, found by asking every
worker; docs/twilio.md, "Acknowledging by SMS reply"), and
``GET``/``POST /a/{token}`` is the page behind the signed link in every SMS (streams/ack_page.py;
a link reaching a worker that does not own the token's escalation partition is forwarded to
the one that does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import orjson
from aiohttp import ClientTimeout
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from deadlines.escalation_codec import decode_state
from deadlines.report import obligation_view
from deadlines.roster import mask_phone
from deadlines.rules import RuleBook
from schemas.events import EventError, FieldError, decode_event, parse_event
from schemas.times import implausible_times
from streams.ack_links import ACK_PATH, AckError, token_partition
from streams.ack_links import verify as verify_token
from streams.ack_page import (
    AckHandlers,
    AckResponse,
    error_response,
    escalation_summary,
    failure_response,
    wants_json,
)
from streams.adapters import CAP_CONTENT_TYPES, AdapterError, get_adapter
from streams.channels import replies
from streams.channels.replies import ReplyIntent, interpret_reply
from streams.channels.twilio_sms import (
    INBOUND_PATH,
    STATUS_CALLBACK_PATH,
    InboundMessage,
    StatusCallback,
    parse_inbound_message,
    parse_status_callback,
    verify_webhook,
)
from streams.escalation_inputs import (
    EscalationOff,
    check_ack,
    obligation_of,
    submit_ack,
    submit_delivery,
)
from streams.notifier import NotifierService
from streams.signing import (
    GHOST_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
    verify_ghost,
)
from streams.sources import Source
from streams.topics import (
    ESCALATION_INPUTS,
    ESCALATIONS_TABLE,
    SUBJECTS_TABLE,
    escalation_partition,
)
from web.access import install_access
from web.body import BodyRefused, read_body
from web.obligations import (
    QueryError,
    encode_cursor,
    local_page,
    parse_query,
    view_key,
)

if TYPE_CHECKING:
    from streams.app import Context

log = logging.getLogger("govclock.web")

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
ACK_TIMEOUT_S = 10.0

#: The paths a public proxy may expose (deploy/k8s/ingress.yaml), as ``(path, exact)``: each
#: checks its caller (HMAC or Ghost signatures, signed links, Twilio's signature). All the
#: other paths (the query API, escalation state, /metrics, /v1/internal/) are
#: unauthenticated and for the cluster network only.
PUBLIC_PATHS: tuple[tuple[str, bool], ...] = (
    ("/v1/events", True),
    ("/v1/hooks/", False),
    (ACK_PATH, False),
    ("/v1/channels/twilio/", False),
)


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


def home_subject(obligation_id: str, book: RuleBook) -> str | None:
    """The subject key an obligation lives on, when its id alone says so (``rule:subject``):
    the subject is the trigger's own id for most rules, the unit for yearly duties. For
    rules that live on another subject (opinions about an incident) it cannot be told."""
    rule_id, _, subject_id = obligation_id.partition(":")
    rules = book.find(rule_id)
    if not rules or not subject_id:
        return None
    rule = rules[0]
    if rule.ref == "unit":
        return f"unit={subject_id.rsplit('/', 1)[0]}"
    if rule.id_path == rule.link_path:
        return f"{rule.ref}={subject_id}"
    return None


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


# -- escalation: helpers of the ack and delivery-report routes (no Faust needed) ----------

#: Set on an ack request one worker forwards to the one that owns the obligation.
FORWARDED_HEADER = "X-Govclock-Forwarded"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
TWILIO_SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
#: A status callback can beat the send's bookkeeping (the SID is recorded once Twilio's
#: answer is back): look the SID up again after these pauses before giving up.
SID_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8)


class Refused(Exception):
    """A request the escalation routes answer with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


# -- acknowledgement links: helpers of GET/POST /a/{token} (no Faust needed) -------------

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


def obligation_path(obligation_id: str) -> str:
    """``/v1/obligations/<id>``, percent-encoded (ids hold Chinese, spaces, slashes)."""
    return "/v1/obligations/" + quote(obligation_id, safe=":")


def ack_unavailable(message: str, message_zh: str, as_json: bool) -> AckResponse:
    """503 (retry): the worker that can answer the link is not known or not ready."""
    return failure_response(503, "unavailable", message, message_zh, as_json)


# -- SMS replies: helpers of POST /v1/channels/twilio/inbound (no Faust needed) ----------

#: Internal: one worker asks another for its unacknowledged pages to some people (JSON POST).
REPLY_CANDIDATES_PATH = "/v1/internal/reply-candidates"
#: How long a worker waits for the others' candidates (Twilio gives a webhook 15 s).
REPLY_PEER_TIMEOUT_S = 5.0
#: MessageSids answered lately (per worker): a webhook delivered twice acknowledges once.
REPLIES_REMEMBERED = 1000
#: token errors, the most telling first, when several workers answer for one token
_TOKEN_ERRORS = ("expired", "forged", "no_escalation", "unknown", "malformed")


def people_with_phone(service: NotifierService, phone: str) -> list[str]:
    """The roster's people with the number ``phone`` (E.164, as Twilio gives ``From``)."""
    return sorted(p.id for p in service.roster.people.values() if p.phone == phone)


@dataclass
class ReplyLookup:
    """What the workers answered about an SMS reply: the escalation partitions they answered
    for, their unacknowledged breach pages to the sender's people (most recent first, one
    per obligation and person) and, for a reply with a link, the verified claim or why not."""

    partitions: set[int] = field(default_factory=set)
    pages: list[dict[str, Any]] = field(default_factory=list)
    claim: dict[str, Any] | None = None
    token_error: str | None = None


def merge_reply_answers(answers: Iterable[Mapping[str, Any]]) -> ReplyLookup:
    """The answers of the workers (``reply_candidates`` bodies) as one :class:`ReplyLookup`."""
    out = ReplyLookup()
    pages: dict[tuple[str, str], dict[str, Any]] = {}
    errors: list[str] = []
    for answer in answers:
        out.partitions.update(int(p) for p in answer.get("partitions") or ())
        for page in answer.get("pages") or ():
            key = (str(page["obligation_id"]), str(page["person_id"]))
            if key not in pages or page["at"] > pages[key]["at"]:
                pages[key] = dict(page)
        token = answer.get("token")
        if isinstance(token, Mapping):
            if isinstance(token.get("claim"), Mapping):
                out.claim = dict(token["claim"])
            elif isinstance(token.get("error"), str):
                errors.append(token["error"])
    out.pages = sorted(
        pages.values(),
        key=lambda p: (p["at"], p["level"], p["obligation_id"], p["person_id"]),
        reverse=True,
    )
    if out.claim is None and errors:
        out.token_error = min(
            errors, key=lambda e: _TOKEN_ERRORS.index(e) if e in _TOKEN_ERRORS else 99
        )
    return out


@dataclass(frozen=True)
class ReplyDecision:
    """What to do about one SMS reply: acknowledge ``ack`` = (obligation, level, person) or
    nothing, answer ``text``; ``outcome`` names the case (logs, stats)."""

    outcome: str
    text: str
    ack: tuple[str, int, str] | None = None


def decide_reply(
    intent: ReplyIntent, lookup: ReplyLookup, partitions: int, token_at: int | None = None
) -> ReplyDecision:
    """The decision for a reply from a roster number, given what the workers answered.

    ``ack``: the most recent unacknowledged breach page to the sender's people, but only if
    every escalation partition answered (else one that did not might hold a later page:
    answer "try again" and acknowledge nothing). ``token``: the page of that link, if the
    partition it names (``token_at``) answered."""
    if intent.kind == "other":
        return ReplyDecision("not_understood", replies.REPLY_HELP)
    if intent.kind == "token":
        if lookup.claim is not None:
            c = lookup.claim
            others = {p["obligation_id"] for p in lookup.pages} - {c["obligation_id"]}
            return ReplyDecision(
                "acknowledged_link",
                replies.reply_acknowledged(
                    str(c.get("short_name") or ""),
                    str(c.get("subject_id") or c["obligation_id"]),
                    int(c["level"]),
                    len(others),
                ),
                (str(c["obligation_id"]), int(c["level"]), str(c["person_id"])),
            )
        if token_at is not None and token_at < partitions and token_at not in lookup.partitions:
            return ReplyDecision("unavailable", replies.REPLY_UNAVAILABLE)
        if lookup.token_error == "expired":
            return ReplyDecision("link_expired", replies.REPLY_LINK_EXPIRED)
        return ReplyDecision("link_invalid", replies.REPLY_LINK_INVALID)
    if not set(range(partitions)) <= lookup.partitions:
        return ReplyDecision("unavailable", replies.REPLY_UNAVAILABLE)
    if not lookup.pages:
        return ReplyDecision("nothing", replies.REPLY_NOTHING)
    page = lookup.pages[0]
    others = {p["obligation_id"] for p in lookup.pages} - {page["obligation_id"]}
    return ReplyDecision(
        "acknowledged",
        replies.reply_acknowledged(
            str(page.get("short_name") or ""),
            str(page.get("subject_id") or page["obligation_id"]),
            int(page["level"]),
            len(others),
        ),
        (str(page["obligation_id"]), int(page["level"]), str(page["person_id"])),
    )


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


# -- GET /v1/obligations across the cluster (no Faust needed) ----------------------------------

#: How long the receiving worker waits for each other worker's part of the list.
LIST_PEER_TIMEOUT_S = 5.0


def partitions_by_url(metadata: Any) -> dict[str, list[int]]:
    """``{worker url: [partitions]}`` of a table, from Faust's ``router.table_metadata``."""
    out: dict[str, list[int]] = {}
    for url, topics in (metadata or {}).items():
        parts = out.setdefault(str(url).rstrip("/"), [])
        for partitions in topics.values():
            parts.extend(int(p) for p in partitions)
        parts.sort()
    return out


def merge_obligation_lists(
    parts: Iterable[Mapping[str, Any]], partitions: int, limit: int | None = None
) -> dict[str, Any]:
    """The cluster's answer from each worker's part: ``{"url", "partitions" (the metadata's),
    "answer": the ``?local=1`` body or None, "error": str or None}``. Obligations from
    workers that answered, each id once, sorted by due time then id, the first ``limit``
    of them; ``more``: whether a page follows (some worker had more, or the merge cut);
    ``partitions``: those answered; ``partial``/``missing_partitions``: those nobody
    answered for."""
    seen: dict[str, dict[str, Any]] = {}
    answered: set[int] = set()
    workers = []
    more = False
    for part in parts:
        answer = part.get("answer")
        entry: dict[str, Any] = {"url": part["url"]}
        if isinstance(answer, Mapping):
            covered = sorted(int(p) for p in answer.get("partitions") or ())
            answered.update(covered)
            entry["partitions"] = covered
            more = more or bool(answer.get("next"))
            for ob in answer.get("obligations") or ():
                seen.setdefault(str(ob["id"]), ob)
        else:
            entry["partitions"] = []
            entry["error"] = str(part.get("error") or "no answer")
        workers.append(entry)
    missing = sorted(set(range(partitions)) - answered)
    obligations = sorted(seen.values(), key=view_key)
    if limit is not None and len(obligations) > limit:
        obligations, more = obligations[:limit], True
    return {
        "obligations": obligations,
        "more": more and bool(obligations),
        "partitions": sorted(answered),
        "partial": bool(missing),
        "missing_partitions": missing,
        "workers": workers,
    }


def json_response(view: View, body: Any, status: int = 200) -> Response:
    """A JSON answer encoded with orjson (a 5,000-obligation page in milliseconds)."""
    return view.bytes(orjson.dumps(body), status=status, content_type="application/json")


def register(ctx: Context) -> None:
    app = ctx.app
    peer_auth = install_access(ctx, PUBLIC_PATHS, FORWARDED_HEADER)  # web/access.py

    async def accept_events(
        view: View, events: list[dict[str, Any]], source: str = "unsigned"
    ) -> Response:
        """Journal, produce, and answer 202 only once the broker has acknowledged."""
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
            return view.json(
                {"error": f"broker unavailable ({type(exc).__name__}); retry later"},
                status=503,
                headers={"Retry-After": "5"},
            )
        ctx.count("requests_accepted")
        ctx.count("events_accepted", len(events))
        ctx.metrics.source_last_event.labels(source).set(time.time())
        return view.json(
            {"accepted": len(events), "event_ids": [e["event_id"] for e in events]},
            status=202,
        )

    rejected = ctx.metrics.events_rejected
    time_policy = ctx.settings.time_policy

    def time_check(event: Any) -> list[FieldError]:
        return implausible_times(event, int(time.time()), time_policy)

    def refused_body(view: View, exc: BodyRefused) -> Response:
        rejected.labels("too_large" if exc.status == 413 else "incomplete").inc()
        return view.json({"error": exc.reason}, status=exc.status)

    def unauthorized(view: View, exc: SignatureError) -> Response:
        ctx.count("requests_unauthorized")
        rejected.labels("signature").inc()
        return view.json({"error": f"signature: {exc}"}, status=401)

    def adapted(
        view: View, adapter: str, body: bytes, unit: str | None, source: str
    ) -> list[dict[str, Any]] | Response:
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
            ctx.count("requests_rejected")
            return view.json({"error": str(exc)}, status=400)
        problems = []
        for i, e in enumerate(events, start=1):
            try:
                implausible = time_check(parse_event(e))
            except EventError as exc:
                problems.append({"line": i, "errors": [x.model_dump() for x in exc.errors]})
                continue
            if implausible:
                problems.append({"line": i, "errors": [x.model_dump() for x in implausible]})
        if problems:
            return view.json({"error": "invalid events", "problems": problems}, status=400)
        return events

    @app.page("/v1/events")
    class EventsView(View):
        async def post(self, request: Request) -> Response:
            http: Any = request  # aiohttp's Request under Faust's web driver
            content_type = (http.content_type or "").split(";")[0].strip().lower()
            if content_type not in JSON_TYPES + NDJSON_TYPES + CAP_CONTENT_TYPES:
                rejected.labels("content_type").inc()
                return self.json(
                    {
                        "error": f"unsupported content type {content_type!r}; send "
                        "application/json, application/x-ndjson or application/cap+xml"
                    },
                    status=415,
                )
            try:
                body = await read_body(http)
            except BodyRefused as exc:
                return refused_body(self, exc)
            try:
                source = check_signature(ctx, http, body)
            except SignatureError as exc:
                return unauthorized(self, exc)
            if content_type in CAP_CONTENT_TYPES:
                unit = source.unit if source else http.query.get("unit")
                name = source.name if source else "unsigned"
                result = adapted(self, "cap", body, unit, name)
                if isinstance(result, list):
                    return await accept_events(self, result, name)
                return result
            events, problems = parse_body(body, content_type, time_check)
            if problems:
                ctx.count("requests_rejected")
                rejected.labels("invalid_event").inc()
                return self.json({"error": "invalid events", "problems": problems}, status=400)
            return await accept_events(self, events, source.name if source else "unsigned")

    @app.page("/v1/hooks/{source_name}")
    class HooksView(View):
        """A CMS's own webhook payload (Ghost, Strapi, WordPress) or a CAP alert, turned
        into events by the source's adapter."""

        async def post(self, request: Request, source_name: str) -> Response:
            http: Any = request
            source = ctx.sources.get(source_name)
            if source is None or source.adapter is None:
                return self.json({"error": f"no adapter source {source_name!r}"}, status=404)
            try:
                body = await read_body(http)
            except BodyRefused as exc:
                return refused_body(self, exc)
            try:
                if source.adapter == "ghost":
                    check_ghost(source, http.headers.get(GHOST_SIGNATURE_HEADER), body)
                else:
                    check_signature(ctx, http, body)
            except SignatureError as exc:
                return unauthorized(self, exc)
            result = adapted(self, source.adapter, body, source.unit, source.name)
            if isinstance(result, list):
                return await accept_events(self, result, source.name)
            return result

    def is_here(url: URL) -> bool:
        here = app.conf.canonical_url
        return (url.host, url.port) == (here.host, here.port)

    def answering_partitions() -> list[int]:
        """The partitions this worker answers the list for: those it owns, once it is ready
        (tables recovered, ledgers rebuilt, start-up backlog through); none before."""
        return ctx.assigned() if ctx.caught_up() else []

    async def peer_list(url: str, query: Mapping[str, str]) -> Any:
        """Another worker's own part of the list (``?local=1``)."""
        target = URL(url).with_path("/v1/obligations").with_query({**query, "local": "1"})
        timeout = ClientTimeout(total=LIST_PEER_TIMEOUT_S)
        headers = {FORWARDED_HEADER: "1", **peer_auth.headers("GET", target)}
        async with app.http_client.get(target, timeout=timeout, headers=headers) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            return await response.json()

    @app.page("/v1/obligations")
    class ObligationsView(View):
        """The obligations of the whole cluster: this worker's partitions from its own
        ledgers, every other worker's (from the subjects table's assignment) asked with the
        same filters and ``?local=1``; merged, each id once, by due time. ``partial`` with
        ``missing_partitions`` when some partition was not answered (a worker down, slow
        or recovering). ``?local=1``: only this worker's part."""

        async def get(self, request: Request) -> Response:
            http: Any = request
            try:
                query = parse_query(request.query)
            except QueryError as exc:
                return self.json({"error": str(exc), "parameter": exc.parameter}, status=400)
            mine = answering_partitions()
            indexes = [ix for p, ix in sorted(ctx.worker.indexes.items()) if p in mine]
            views, last = await local_page(indexes, query)
            local = {
                "obligations": views,
                "partitions": mine,
                "next": encode_cursor(last, query.filters) if last else None,
            }
            if request.query.get("local") in ("1", "true") or http.headers.get(FORWARDED_HEADER):
                return json_response(self, local)
            try:
                urls = partitions_by_url(app.router.table_metadata(SUBJECTS_TABLE))
            except KeyError:
                urls = {}
            peers = [u for u in urls if not is_here(URL(u))]
            params = query.peer_params(request.query.get("cursor"))
            answers = await asyncio.gather(
                *(peer_list(u, params) for u in peers), return_exceptions=True
            )
            here = str(app.conf.canonical_url).rstrip("/")
            parts: list[dict[str, Any]] = [{"url": here, "answer": local}]
            for url, answer in zip(peers, answers, strict=True):
                if isinstance(answer, BaseException):
                    error = f"{type(answer).__name__}: {answer}".rstrip(": ")
                    app.log.warning(f"govclock: {url} did not answer the list: {error}")
                    parts.append({"url": url, "answer": None, "error": error})
                else:
                    parts.append({"url": url, "answer": answer})
            merged = merge_obligation_lists(parts, ctx.settings.partitions, query.limit)
            more = merged.pop("more")
            obs = merged["obligations"]
            merged["next"] = encode_cursor(view_key(obs[-1]), query.filters) if more else None
            return json_response(self, merged)

    @app.page("/v1/obligations/{obligation_id}")
    class ObligationView(View):
        async def get(self, request: Request, obligation_id: str) -> Response:
            home = home_subject(obligation_id, ctx.book)
            if home is not None:
                try:  # answered by the worker that owns the obligation's subject
                    response: Response = await ctx.app.router.route_req(
                        SUBJECTS_TABLE, home.encode(), self.web, request
                    )
                    return response
                except SameNode:
                    pass
                except ServiceUnavailable:
                    return self.json({"error": "the owning worker is not known yet"}, status=503)
            ob = ctx.worker.find(obligation_id)
            if ob is not None:
                return self.json(obligation_view(ob))
            http: Any = request
            if home is None and not http.headers.get(FORWARDED_HEADER):
                found = await find_obligation(obligation_id)  # the id names no subject: ask all
                if found is not None:
                    return self.json(found)
            return self.json({"error": f"no obligation {obligation_id!r} here"}, status=404)

    # -- escalation: acknowledgements, the state, delivery reports ----------------------

    def owns(obligation_id: str) -> bool:
        p = escalation_partition(obligation_id, ctx.settings.partitions)
        return any(
            tp.topic == ESCALATION_INPUTS and tp.partition == p
            for tp in app.assignor.assigned_actives()
        )

    async def forward_ack(view: View, http: Any, obligation_id: str, body: bytes) -> Any:
        """The response of the worker that owns the obligation (POST with its body; Faust's
        router forwards no body), or None when that is this worker or not known."""
        try:
            dest = app.router.key_store(ESCALATIONS_TABLE, obligation_id.encode())
        except KeyError:
            return None
        here = app.conf.canonical_url
        if (dest.host, dest.port) == (here.host, here.port):
            return None
        url = http.url.with_host(dest.host).with_port(dest.port)
        headers = {
            "Content-Type": "application/json",
            FORWARDED_HEADER: "1",
            **peer_auth.headers("POST", url),
        }
        async with app.http_client.post(url, data=body, headers=headers) as response:
            return view.bytes(
                await response.read(),
                content_type=response.content_type,
                status=response.status,
            )

    @app.page("/v1/obligations/{obligation_id}/ack")
    class AckView(View):
        """``{"level": 1, "person": "li"}``: 202 once the broker has the ack."""

        async def post(self, request: Request, obligation_id: str) -> Response:
            http: Any = request
            service = ctx.notifier
            if service is None:
                return self.json({"error": "escalation is off (no roster)"}, status=404)
            try:
                body = await read_body(http)
            except BodyRefused as exc:
                return refused_body(self, exc)
            try:
                level, person = parse_ack(body, service)
            except Refused as exc:
                return self.json({"error": exc.message}, status=exc.status)
            if owns(obligation_id):
                if not service.runtime.restored:
                    return self.json({"error": "recovering; retry"}, status=503)
                if obligation_id.encode() not in service.table:
                    return self.json(
                        {"error": f"no escalation for obligation {obligation_id!r}"}, status=404
                    )
            elif not http.headers.get(FORWARDED_HEADER):
                try:
                    forwarded = await forward_ack(self, http, obligation_id, body)
                except Exception as exc:  # the owner did not answer: take it here
                    app.log.warning(f"govclock: ack forward failed ({exc!r}); sending it here")
                    forwarded = None
                if forwarded is not None:
                    return forwarded  # type: ignore[no-any-return]
            try:
                await submit_ack(ctx, obligation_id, level, person, int(time.time()), via="api")
            except EscalationOff as exc:
                return self.json({"error": str(exc)}, status=404)
            except Exception as exc:
                return self.json(
                    {"error": f"broker unavailable ({type(exc).__name__}); retry later"},
                    status=503,
                    headers={"Retry-After": "5"},
                )
            return self.json(
                {"obligation_id": obligation_id, "level": level, "person": person}, status=202
            )

    @app.page("/v1/obligations/{obligation_id}/escalation")
    class EscalationView(View):
        """The obligation's escalation: stage, pages and their delivery, acks, audit log."""

        async def get(self, request: Request, obligation_id: str) -> Response:
            service = ctx.notifier
            if service is None:
                return self.json({"error": "escalation is off (no roster)"}, status=404)
            key = obligation_id.encode()
            try:
                response: Response = await app.router.route_req(
                    ESCALATIONS_TABLE, key, self.web, request
                )
                return response
            except SameNode:
                pass
            except ServiceUnavailable:
                return self.json({"error": "the owning worker is not known yet"}, status=503)
            raw = service.table.get(key)
            if raw is None:
                return self.json({"error": f"no escalation for {obligation_id!r}"}, status=404)
            return self.json(service.runtime.view(raw))

    @app.page(STATUS_CALLBACK_PATH)
    class TwilioStatusView(View):
        """Twilio's status callbacks (form-encoded, signed): 204 once the report is on its
        way to the obligation's notifier."""

        async def post(self, request: Request) -> Response:
            http: Any = request
            service = ctx.notifier
            try:
                body = await read_body(http)
            except BodyRefused as exc:
                return refused_body(self, exc)
            try:
                report = check_status_callback(service, http.path_qs, body, http.headers)
                assert service is not None
                key, partition = await delivery_target(
                    service, report, http.query.get("p"), ctx.settings.partitions
                )
            except Refused as exc:
                if exc.status == 403:
                    rejected.labels("signature").inc()
                return self.json({"error": exc.message}, status=exc.status)
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
                return self.json(
                    {"error": f"broker unavailable ({type(exc).__name__})"}, status=503
                )
            return self.bytes(b"", status=204)

    # -- SMS replies: acknowledging by answering the page (two-way numbers only) ---------

    recent_replies = RecentReplies()

    def escalation_partitions_here() -> list[int]:
        """The escalation partitions this worker answers for (none while recovering)."""
        service = ctx.notifier
        if service is None or not service.runtime.restored:
            return []
        return sorted(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == ESCALATION_INPUTS
        )

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

    def reply_candidates(
        people: list[str], since: int, token: str | None, now: int
    ) -> dict[str, Any]:
        """This worker's part: its partitions, the unacknowledged breach pages to ``people``
        sent since ``since`` in them, and the link's claim if its partition is here."""
        service = ctx.notifier
        assert service is not None
        mine = escalation_partitions_here()
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
            if at in mine or (mine and at >= ctx.settings.partitions):
                answer["token"] = reply_token(service, token, now)
        return answer

    async def ask_peer(url: str, payload: bytes) -> Any:
        target = URL(url).with_path(REPLY_CANDIDATES_PATH)
        headers = {
            "Content-Type": "application/json",
            FORWARDED_HEADER: "1",
            **peer_auth.headers("POST", target),
        }
        timeout = ClientTimeout(total=REPLY_PEER_TIMEOUT_S)
        async with app.http_client.post(
            target, data=payload, headers=headers, timeout=timeout
        ) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            return await response.json()

    async def gather_reply_candidates(
        people: list[str], since: int, token: str | None, now: int
    ) -> ReplyLookup:
        """Every worker's part (this one's directly, the others' over HTTP, at once)."""
        answers: list[Mapping[str, Any]] = [reply_candidates(people, since, token, now)]
        try:
            urls = partitions_by_url(app.router.table_metadata(ESCALATIONS_TABLE))
        except KeyError:
            urls = {}
        peers = [u for u in urls if not is_here(URL(u))]
        payload = json.dumps({"people": people, "since": since, "token": token, "now": now})
        results = await asyncio.gather(
            *(ask_peer(u, payload.encode()) for u in peers), return_exceptions=True
        )
        for url, result in zip(peers, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("SMS reply: %s did not answer: %r", url, result)
            elif isinstance(result, Mapping):
                answers.append(result)
        return merge_reply_answers(answers)

    async def answer_reply(service: NotifierService, message: InboundMessage) -> str:
        """Acknowledge what the reply names, if anything; the text to answer with."""
        masked = mask_phone(message.from_number)
        known = recent_replies.get(message.sid)
        if known is not None:
            ctx.metrics.sms_reply("duplicate")
            log.info("SMS reply %s from %s: answered before", message.sid, masked)
            return known
        people = people_with_phone(service, message.from_number)
        if not people:
            ctx.count("sms_replies_unknown_number")
            ctx.metrics.sms_reply("unknown_number")
            log.info("SMS reply %s from %s: not a roster number", message.sid, masked)
            recent_replies.put(message.sid, replies.REPLY_UNKNOWN_NUMBER)
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
            lookup = await gather_reply_candidates(people, since, intent.token, now)
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
            recent_replies.put(message.sid, decision.text)
        return decision.text

    @app.page(INBOUND_PATH)
    class TwilioInboundView(View):
        """Twilio's incoming-message webhook (form-encoded, signed): an SMS reply to the
        Twilio number. Answers TwiML (``<Response><Message>…``) in every case but a bad
        signature (403), an unusable form (400) or Twilio not configured (404)."""

        async def post(self, request: Request) -> Response:
            http: Any = request
            service = ctx.notifier
            try:
                body = await read_body(http)
            except BodyRefused as exc:
                ctx.metrics.sms_reply("bad_request")
                return refused_body(self, exc)
            try:
                message = check_inbound(service, http.path_qs, body, http.headers)
            except Refused as exc:
                if exc.status == 403:
                    rejected.labels("signature").inc()
                    ctx.metrics.sms_reply("bad_signature")
                elif exc.status == 400:
                    ctx.metrics.sms_reply("bad_request")
                return self.json({"error": exc.message}, status=exc.status)
            assert service is not None
            text = await answer_reply(service, message)
            return self.bytes(
                replies.twiml(text).encode(),
                status=200,
                headers={"Content-Type": "text/xml; charset=utf-8"},
            )

    @app.page(REPLY_CANDIDATES_PATH)
    class ReplyCandidatesView(View):
        """Internal (one worker to another): this worker's part of an SMS reply's lookup,
        JSON ``{"people": [...], "since": t, "token": str | null, "now": t}``."""

        async def post(self, request: Request) -> Response:
            http: Any = request
            if ctx.notifier is None:
                return self.json({"error": "escalation is off (no roster)"}, status=404)
            try:
                body = await read_body(http)
            except BodyRefused as exc:
                return refused_body(self, exc)
            try:
                data = orjson.loads(body)
                people = [str(p) for p in data["people"]]
                since, now = int(data["since"]), int(data["now"])
                token = data.get("token")
                if token is not None and not isinstance(token, str):
                    raise TypeError("token")
            except (ValueError, KeyError, TypeError) as exc:
                return self.json({"error": f"bad request: {exc!r}"}, status=400)
            return self.json(reply_candidates(people, since, token, now))

    # -- acknowledgement links: the page behind the link in every SMS --------------------

    def owns_partition(partition: int) -> bool:
        return any(
            tp.topic == ESCALATION_INPUTS and tp.partition == partition
            for tp in app.assignor.assigned_actives()
        )

    async def peer_json(url: URL) -> Any:
        """The JSON another worker answers for a GET, None unless 200."""
        timeout = ClientTimeout(total=PEER_TIMEOUT_S)
        # the peer answers from its own ledgers only
        headers = {FORWARDED_HEADER: "1", **peer_auth.headers("GET", url)}
        async with app.http_client.get(url, timeout=timeout, headers=headers) as response:
            if response.status != 200:
                return None
            return await response.json()

    async def find_obligation(obligation_id: str) -> dict[str, Any] | None:
        """``GET /v1/obligations/{id}``'s JSON: from this worker's ledgers, else from the
        worker that owns the obligation's subject (or, when the id does not say which subject
        it lives on, from each other worker)."""
        ob = ctx.worker.find(obligation_id)
        if ob is not None:
            return obligation_view(ob)
        home = home_subject(obligation_id, ctx.book)
        peers: list[URL] = []
        if home is not None:
            try:
                peers = [app.router.key_store(SUBJECTS_TABLE, home.encode())]
            except KeyError:
                return None
        else:
            peers = [URL(str(u)) for u in app.router.table_metadata(SUBJECTS_TABLE)]
        for peer in peers:
            if is_here(peer):
                continue
            url = URL(str(peer).rstrip("/") + obligation_path(obligation_id), encoded=True)
            try:
                found = await peer_json(url)
            except Exception as exc:  # a worker down: the others may still have it
                log.warning("obligation %s: %s did not answer: %r", obligation_id, peer, exc)
                continue
            if isinstance(found, dict):
                return found
        return None

    def ack_service() -> NotifierService:
        service = ctx.notifier
        if service is None:
            raise EscalationOff("escalation is off (no roster)")
        return service

    async def load_obligation(obligation_id: str) -> dict[str, Any] | None:
        found = await find_obligation(obligation_id)
        if found is not None and ctx.notifier is not None:
            unit = ctx.notifier.roster.units.get(str(found.get("unit")))
            if unit is not None and unit.name:
                found = {**found, "unit_name": unit.name}
        return found

    async def load_escalation(obligation_id: str) -> dict[str, Any] | None:
        raw = ack_service().table.get(obligation_id.encode())
        return None if raw is None else escalation_summary(decode_state(raw))

    async def acknowledge(obligation_id: str, level: int, person: str, at: int) -> None:
        service = ack_service()
        if obligation_id.encode() not in service.table:
            raise LookupError(obligation_id)
        await submit_ack(ctx, obligation_id, level, person, at, via="link")

    def title_for(rule_id: str) -> str | None:
        rules = ctx.book.find(rule_id)
        return rules[0].title if rules else None

    handlers = AckHandlers(
        ctx.notifier.ack_secrets if ctx.notifier is not None else (),
        lambda ref: ack_service().runtime.refs(ref),
        acknowledge,
        load_obligation=load_obligation,
        load_escalation=load_escalation,
        title_for=title_for,
    )

    def respond(view: View, r: AckResponse) -> Response:
        headers = {**r.headers, "Content-Type": f"{r.content_type}; charset=utf-8"}
        return view.bytes(r.body, status=r.status, headers=headers)

    async def forward_link(view: View, http: Any, dest: URL, method: str) -> Response:
        """The answer of the worker that owns the link's escalation partition."""
        url = http.url.with_host(dest.host).with_port(dest.port)
        headers = {FORWARDED_HEADER: "1", **peer_auth.headers(method, url)}
        if http.headers.get("Accept"):
            headers["Accept"] = http.headers["Accept"]
        timeout = ClientTimeout(total=PEER_TIMEOUT_S)
        async with app.http_client.request(
            method, url, headers=headers, timeout=timeout
        ) as response:
            body = await response.read()
            passed = {k: response.headers[k] for k in ACK_PASS_HEADERS if k in response.headers}
            return view.bytes(body, status=response.status, headers=passed)

    async def ack_link(view: View, http: Any, token: str, method: str) -> Response:
        as_json = wants_json(http.headers.get("Accept"))
        if method == "POST":  # a form with no fields: read (and bound) it all the same
            try:
                await read_body(http)
            except BodyRefused as exc:
                return refused_body(view, exc)
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
        if partition < ctx.settings.partitions and not owns_partition(partition):
            try:
                dest = owner_of_partition(app.router.table_metadata(ESCALATIONS_TABLE), partition)
            except KeyError:
                dest = None
            if http.headers.get(FORWARDED_HEADER) or dest is None or is_here(dest):
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
                return await forward_link(view, http, dest, method)
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
            return respond(view, await handlers.post(token, now=now, accept=accept))
        return respond(view, await handlers.get(token, now=now, accept=accept))

    @app.page(ACK_PATH + "{token}")
    class AckLinkView(View):
        """The acknowledgement page: ``GET`` shows it (never acknowledges), ``POST``
        acknowledges (``submit_ack(..., via="link")``) and shows the confirmation."""

        async def get(self, request: Request, token: str) -> Response:
            return await ack_link(self, request, token, "GET")

        async def post(self, request: Request, token: str) -> Response:
            return await ack_link(self, request, token, "POST")

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body = generate_latest(ctx.metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "uptime_s": round(time.time() - ctx.started_at, 1)})

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready = ctx.caught_up()
            body = {
                "ready": ready,
                "partitions": ctx.assigned(),
                "backlog": ctx.backlog,
                "stats": ctx.stats,
            }
            return self.json(body, status=200 if ready else 503)
