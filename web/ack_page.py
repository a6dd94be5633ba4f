"""The acknowledgement page behind an SMS link, and its HTTP handlers (framework-free).

``GET /a/{token}`` shows one small, self-contained HTML page (Chinese UI, phone-sized, inline
CSS, no external assets): the obligation (rule title, subject, unit), its deadline with a
countdown or how long it is overdue, its timeline in 北京时间, the escalation state when known,
and a "确认收到 / Acknowledge" button that POSTs a form to the same URL. It works without
JavaScript; a tiny inline script only keeps the countdown running. ``POST /a/{token}``
acknowledges and answers a confirmation page. A client that prefers ``application/json``
(``Accept``) gets JSON instead of HTML for both. GET never acknowledges (SMS apps and link
scanners fetch links to preview them).

Everything here is plain data in, ``(status, content type, body, headers)`` out
(:class:`AckResponse`); the web framework only copies it into its response. Time is passed in.
Input: the JSON of ``GET /v1/obligations/{id}`` (:func:`deadlines.report.obligation_view`),
optionally with ``title`` (the rule's title) and ``unit_name``, and an escalation summary
(:func:`escalation_summary`, no phone numbers). Every string from the data is escaped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from deadlines.escalation import next_wake
from deadlines.escalation_state import EscalationState
from deadlines.timefmt import rfc3339
from escalation.links import AckClaim, AckError, Lookup, Secret, verify
from web.ack_html import (
    CSP,
    HEADERS,
    esc,
    page_html,
    render_ack_page,
    render_confirmation,
    render_error,
)

__all__ = [
    "AckHandlers",
    "AckResponse",
    "error_response",
    "escalation_summary",
    "failure_response",
    "wants_json",
]

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
HTML_TYPE = "text/html"


# ---------------------------------------------------------------------------------------
# Escalation summary (plain data for the page and the JSON API; no phone numbers)


def escalation_summary(state: EscalationState) -> dict[str, Any]:
    """What the page shows of an obligation's escalation: stage, rung, acks, messages."""
    wake = next_wake(state)
    return {
        "stage": state.stage,
        "level": state.level,
        "next_at": rfc3339(wake) if wake is not None else None,
        "acks": [
            {
                "level": a.level,
                "person_id": a.person_id,
                "at": rfc3339(a.at),
                "current": a.stage == state.breach_id,
            }
            for a in state.acks
        ],
        "messages": [
            {
                "at": rfc3339(s.at),
                "kind": s.kind,
                "level": s.level,
                "person_id": s.contact.person_id,
                "channel": s.contact.channel,
                "status": s.status,
            }
            for s in state.sent
        ],
    }


# ---------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True, slots=True)
class AckResponse:
    """What to answer: copy into the framework's response."""

    status: int
    content_type: str  # without charset; the body is UTF-8
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def wants_json(accept: str | None) -> bool:
    """True when the ``Accept`` header prefers JSON to HTML (a browser's never does)."""
    if not accept:
        return False
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        media = media.lower()
        weights[media] = max(weights.get(media, 0.0), weight)
    as_json = weights.get(JSON_TYPE, 0.0)
    as_html = max(weights.get(HTML_TYPE, 0.0), weights.get("application/xhtml+xml", 0.0))
    return as_json > 0 and as_json > as_html


def _html(status: int, page: str) -> AckResponse:
    headers = {**HEADERS, "Content-Security-Policy": CSP}
    return AckResponse(status, HTML_TYPE, page.encode("utf-8"), headers)


def _json(status: int, data: Mapping[str, Any]) -> AckResponse:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return AckResponse(status, JSON_TYPE, body, dict(HEADERS))


def error_response(error: AckError, as_json: bool = False) -> AckResponse:
    """410 for an expired link, 404 for anything else wrong with it."""
    status = 410 if error.reason == "expired" else 404
    if as_json:
        return _json(
            status,
            {"error": error.reason, "message": str(error), "message_zh": error.message_zh},
        )
    return _html(status, render_error(error))


def failure_response(
    status: int, error: str, message: str, message_zh: str, as_json: bool = False
) -> AckResponse:
    """A page (or JSON ``{error, message, message_zh}``) for a request that could not be
    served; 503 adds ``Retry-After``."""
    if as_json:
        response = _json(status, {"error": error, "message": message, "message_zh": message_zh})
    else:
        body = (
            '<h1>政务时限提醒</h1><section id="error">'
            f'<p class="err-big">{esc(message_zh)}</p><p>{esc(message)}.</p></section>'
        )
        response = _html(status, page_html("未能确认 · 政务时限", body))
    if status == 503:
        response = replace(response, headers={**response.headers, "Retry-After": "30"})
    return response


def _claim_json(claim: AckClaim) -> dict[str, Any]:
    return {
        "obligation_id": claim.obligation_id,
        "level": claim.level,
        "person_id": claim.person_id,
        "expires_at": rfc3339(claim.expires_at),
    }


Loader = Callable[[str], Awaitable[Mapping[str, Any] | None]]
#: ``acknowledge(obligation_id, level, person_id, at)``; LookupError: nothing to acknowledge.
Acknowledge = Callable[[str, int, str, int], Awaitable[None]]


@dataclass
class AckHandlers:
    """``GET`` and ``POST /a/{token}`` as functions of (token, now, Accept header).

    ``lookup``: the :class:`escalation.links.AckIndex` (or any :data:`Lookup`).
    ``acknowledge``: records the ack (e.g. ``submit_ack`` or ``Notifier.acknowledge``); a
    LookupError from it means there is no escalation to acknowledge (404), any other error
    that it could not be recorded now (503, Retry-After; acks are idempotent).
    ``load_obligation``: the obligation's JSON (``GET /v1/obligations/{id}``), None if not
    found. ``load_escalation``: :func:`escalation_summary` of its state, None if none.
    ``title_for``: rule id -> title.
    A loader that fails only leaves its part out of the page: acknowledging still works."""

    secrets: Secret | Sequence[Secret]
    lookup: Lookup
    acknowledge: Acknowledge
    load_obligation: Loader | None = None
    load_escalation: Loader | None = None
    title_for: Callable[[str], str | None] | None = None

    async def _load(self, loader: Loader | None, obligation_id: str) -> Mapping[str, Any] | None:
        if loader is None:
            return None
        try:
            return await loader(obligation_id)
        except Exception as exc:  # the page still lets the person acknowledge
            log.warning("ack page: loading %s failed: %r", obligation_id, exc)
            return None

    def _title(self, obligation: Mapping[str, Any] | None) -> str | None:
        if obligation is None or self.title_for is None:
            return None
        rule_id = obligation.get("rule_id")
        return self.title_for(rule_id) if isinstance(rule_id, str) else None

    def _verify(self, token: str, now: int) -> AckClaim | AckError:
        try:
            return verify(token, self.secrets, now, self.lookup)
        except AckError as exc:
            log.info("ack link refused: %s", exc.reason)
            return exc

    async def get(self, token: str, *, now: int, accept: str | None = None) -> AckResponse:
        """The page (or JSON) for a link; 404/410 for a bad or expired one."""
        as_json = wants_json(accept)
        claim = self._verify(token, now)
        if isinstance(claim, AckError):
            return error_response(claim, as_json)
        obligation = await self._load(self.load_obligation, claim.obligation_id)
        escalation = await self._load(self.load_escalation, claim.obligation_id)
        if as_json:
            return _json(
                200,
                {
                    **_claim_json(claim),
                    "obligation": obligation,
                    "escalation": escalation,
                    "acknowledge": {"method": "POST"},
                },
            )
        page = render_ack_page(
            obligation, claim, now, title=self._title(obligation), escalation=escalation
        )
        return _html(200, page)

    async def post(self, token: str, *, now: int, accept: str | None = None) -> AckResponse:
        """Acknowledge: calls ``acknowledge`` and answers the confirmation (or JSON)."""
        as_json = wants_json(accept)
        claim = self._verify(token, now)
        if isinstance(claim, AckError):
            return error_response(claim, as_json)
        try:
            await self.acknowledge(claim.obligation_id, claim.level, claim.person_id, now)
        except LookupError:
            return failure_response(
                404,
                "no_escalation",
                "no escalation for this obligation here: nothing to acknowledge",
                "此处没有该事项的催办记录,无需确认",
                as_json,
            )
        except Exception as exc:  # broker down, notifier off, …: nothing known; retry is safe
            log.warning("ack of %s not recorded: %r", claim.obligation_id, exc)
            return failure_response(
                503,
                "unavailable",
                "the acknowledgement could not be recorded right now; try again in a minute",
                "暂时无法记录确认,请稍后重试",
                as_json,
            )
        log.info(
            "acknowledged %s level %d by %s", claim.obligation_id, claim.level, claim.person_id
        )
        if as_json:
            return _json(200, {"acknowledged": True, **_claim_json(claim), "at": rfc3339(now)})
        obligation = await self._load(self.load_obligation, claim.obligation_id)
        page = render_confirmation(claim, now, obligation, title=self._title(obligation))
        return _html(200, page)
