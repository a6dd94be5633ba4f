"""SMS replies that acknowledge a page (two-way SMS; docs/twilio.md, "Acknowledging by SMS reply").

Pure functions, no I/O: what a reply's body asks for (:func:`interpret_reply`), what to do
given what the workers answered about the sender's pages (:func:`decide_reply`), and the
short Chinese answers sent back (:func:`twiml`, the ``REPLY_*`` texts). The web route
(``POST /v1/channels/twilio/inbound``, web/twilio.py) verifies the request, asks the workers
for the pages the reply may answer and records the acknowledgement.

A body acknowledges when, once normalised, it is one of :data:`ACK_WORDS`: Unicode NFKC (so
full-width ``ＯＫ`` and ``１`` count), case-folded, surrounding whitespace, punctuation and
symbols dropped (``"确认!"``, ``" OK. "``, ``"【收到】"``). A body that carries an
acknowledgement link (``…/a/<token>``) or a bare 24-character token names the page itself.
Anything else is answered with a hint and changes nothing.

+86 numbers cannot receive a reply's answer or send replies to a Twilio number at all: this
is for roster numbers outside mainland China (and domestic providers with two-way SMS); the
signed link in every message is the way for everyone else.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.sax.saxutils import escape

from escalation.links import ACK_PATH, TOKEN_CHARS

__all__ = [
    "ACK_WORDS",
    "REPLY_HELP",
    "REPLY_LINK_EXPIRED",
    "REPLY_LINK_INVALID",
    "REPLY_NOTHING",
    "REPLY_UNAVAILABLE",
    "REPLY_UNKNOWN_NUMBER",
    "ReplyDecision",
    "ReplyIntent",
    "ReplyLookup",
    "decide_reply",
    "interpret_reply",
    "merge_reply_answers",
    "normalize_reply",
    "reply_acknowledged",
    "twiml",
]

#: Replies that acknowledge the most recent unacknowledged breach page (after normalising).
ACK_WORDS = frozenset({"1", "确认", "收到", "确认收到", "ok", "ack"})

_TOKEN_CHARS = r"A-Za-z0-9_\-"
_TOKEN = rf"([{_TOKEN_CHARS}]{{{TOKEN_CHARS}}})(?![{_TOKEN_CHARS}])"
_LINK = re.compile(re.escape(ACK_PATH) + _TOKEN)
_BARE_TOKEN = re.compile(rf"(?<![{_TOKEN_CHARS}/])" + _TOKEN)
#: A reply longer than this is not read (an SMS is at most 10 segments anyway).
MAX_BODY_CHARS = 1600

PREFIX = "【政务时限】"
REPLY_HELP = f"{PREFIX}回复1或“确认”即确认最近一条超时催办;也可点短信中的链接。"
REPLY_NOTHING = f"{PREFIX}没有待您确认的超时催办(可能已有人确认,或已超过确认时限)。"
REPLY_UNAVAILABLE = f"{PREFIX}暂时无法确认,请稍后重发,或点短信中的链接。"
REPLY_UNKNOWN_NUMBER = f"{PREFIX}此号码仅发送通知,不处理回复。"
REPLY_LINK_EXPIRED = f"{PREFIX}该确认链接已过期。回复1可确认最近一条超时催办。"
REPLY_LINK_INVALID = f"{PREFIX}该确认链接无效。回复1可确认最近一条超时催办。"
#: Subjects longer than this are shortened with … in the answer.
SUBJECT_CHARS = 24


@dataclass(frozen=True, slots=True)
class ReplyIntent:
    """What a reply asks for: ``ack`` (the most recent page), ``token`` (the page of that
    acknowledgement link) or ``other`` (nothing: answer with a hint)."""

    kind: Literal["ack", "token", "other"]
    token: str | None = None


def _strippable(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] in "PSZC"


def normalize_reply(body: str) -> str:
    """``body`` NFKC-normalised, case-folded, without surrounding whitespace, punctuation,
    symbols or control characters."""
    text = unicodedata.normalize("NFKC", body).casefold()
    start, end = 0, len(text)
    while start < end and _strippable(text[start]):
        start += 1
    while end > start and _strippable(text[end - 1]):
        end -= 1
    return text[start:end]


def interpret_reply(body: str) -> ReplyIntent:
    """The intent of an SMS reply's body (see the module's docstring)."""
    body = body[:MAX_BODY_CHARS]
    link = _LINK.search(body)
    if link is not None:
        return ReplyIntent("token", link.group(1))
    if normalize_reply(body) in ACK_WORDS:
        return ReplyIntent("ack")
    bare = _BARE_TOKEN.search(body.strip())
    if bare is not None:
        return ReplyIntent("token", bare.group(1))
    return ReplyIntent("other")


def _short(text: str, limit: int = SUBJECT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reply_acknowledged(short_name: str, subject_id: str, level: int, remaining: int = 0) -> str:
    """The answer to a reply that acknowledged: what it was, and how many pages to the same
    person are still unacknowledged (another "1" acknowledges the next most recent)."""
    name = f"{short_name}·{_short(subject_id)}" if short_name else _short(subject_id)
    text = f"{PREFIX}已确认:{name}({level}级),停止催办。"
    if remaining > 0:
        text += f"另有{remaining}项待确认,再回复1确认下一项。"
    return text


def twiml(message: str | None) -> str:
    """A TwiML document that answers with ``message`` (none: answer nothing)."""
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    if not message:
        return f"{head}<Response/>"
    return f"{head}<Response><Message>{escape(message)}</Message></Response>"


#: token errors, the most telling first, when several workers answer for one token
_TOKEN_ERRORS = ("expired", "forged", "no_escalation", "unknown", "malformed")


# -- deciding: what the workers answered about a reply, and what to do --------------------


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
        return ReplyDecision("not_understood", REPLY_HELP)
    if intent.kind == "token":
        if lookup.claim is not None:
            c = lookup.claim
            others = {p["obligation_id"] for p in lookup.pages} - {c["obligation_id"]}
            return ReplyDecision(
                "acknowledged_link",
                reply_acknowledged(
                    str(c.get("short_name") or ""),
                    str(c.get("subject_id") or c["obligation_id"]),
                    int(c["level"]),
                    len(others),
                ),
                (str(c["obligation_id"]), int(c["level"]), str(c["person_id"])),
            )
        if token_at is not None and token_at < partitions and token_at not in lookup.partitions:
            return ReplyDecision("unavailable", REPLY_UNAVAILABLE)
        if lookup.token_error == "expired":
            return ReplyDecision("link_expired", REPLY_LINK_EXPIRED)
        return ReplyDecision("link_invalid", REPLY_LINK_INVALID)
    if not set(range(partitions)) <= lookup.partitions:
        return ReplyDecision("unavailable", REPLY_UNAVAILABLE)
    if not lookup.pages:
        return ReplyDecision("nothing", REPLY_NOTHING)
    page = lookup.pages[0]
    others = {p["obligation_id"] for p in lookup.pages} - {page["obligation_id"]}
    return ReplyDecision(
        "acknowledged",
        reply_acknowledged(
            str(page.get("short_name") or ""),
            str(page.get("subject_id") or page["obligation_id"]),
            int(page["level"]),
            len(others),
        ),
        (str(page["obligation_id"]), int(page["level"]), str(page["person_id"])),
    )
