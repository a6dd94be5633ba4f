"""The event contract: what CMS webhooks, incident systems, feeds and replay files send.

One JSON object per event, discriminated on ``type``. Every event carries ``event_id``
(unique; a repeat is ignored), ``type`` and ``unit`` (the responsible unit). Timestamps are
RFC 3339 with an offset; fields typed :data:`DayOrInstant` also accept a bare date
(``2026-02-12``), which many government sources give instead of a time.

Validation errors are field-level: :func:`parse_event` raises :class:`EventError` whose
``errors`` list names each bad field by its dotted path.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeAlias, get_args

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control(value: str, pattern: re.Pattern[str] = _CONTROL) -> str:
    """Refuse control characters (NUL above all: no database text column holds it)."""
    found = pattern.search(value)
    if found is not None:
        raise ValueError(
            f"control character U+{ord(found.group()):04X} at position {found.start()}"
        )
    return value


def _no_control_in_text(value: str) -> str:
    """Text may hold tabs and line breaks, no other control character."""
    return _no_control(value, _CONTROL_IN_TEXT)


Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    AfterValidator(_no_control),
]
Text = Annotated[
    str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_no_control_in_text)
]
Url = Annotated[
    str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
]

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
INSTANT_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_INSTANT_HINT = "an RFC 3339 timestamp with an offset, e.g. 2026-03-09T14:20:00+08:00"


def _rfc3339(value: object) -> object:
    """Only RFC 3339 text (or a datetime): never epoch numbers or digit strings."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and INSTANT_RE.match(value):
        return value
    raise ValueError(f"expected {_INSTANT_HINT}, got {value!r}")


def _day_or_rfc3339(value: object) -> object:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and (DATE_RE.match(value) or INSTANT_RE.match(value)):
        return value
    raise ValueError(f"expected a date (2026-03-09) or {_INSTANT_HINT}, got {value!r}")


#: An instant with an offset, given as RFC 3339 text.
Instant: TypeAlias = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
#: An instant with an offset, or a bare calendar date (Asia/Shanghai) when only the date is known.
DayOrInstant: TypeAlias = Annotated[AwareDatetime | date, BeforeValidator(_day_or_rfc3339)]
#: The fields typed DayOrInstant, whose union members pydantic names in error locations.
_DAY_OR_INSTANT_FIELDS = frozenset(
    {"issued_at", "published_at", "decided_at", "completed_at", "received_at", "at"}
)
Count = Annotated[int, Field(ge=0, strict=True)]

Severity = Literal["I", "II", "III", "IV"]
DocumentKind = Literal["normative", "policy", "other"]
Disclosure = Literal["proactive", "on_application", "not_disclosed"]
PublicationKind = Literal[
    "press_release",
    "press_conference",
    "update",
    "document",
    "policy",
    "interpretation",
    "power_list",
    "decision_publicity",
    "reply",
    "response",
    "rebuttal",
    "annual_report",
    "news",
]
DecisionKind = Literal["licensing", "penalty"]
OpinionTopic = Literal["emergency", "policy", "livelihood", "rumor", "other"]

#: The identifiers an event can name; each one is a subject that obligations hang off.
RefField = Literal[
    "incident_id", "document_id", "decision_id", "application_id", "opinion_id", "change_id"
]
REF_FIELDS: tuple[str, ...] = get_args(RefField)

EventType = Literal[
    "incident.reported",
    "incident.updated",
    "document.issued",
    "document.published",
    "decision.made",
    "org.changed",
    "application.received",
    "application.correction_requested",
    "application.corrected",
    "application.consultation_started",
    "application.consultation_ended",
    "application.extended",
    "opinion.detected",
    "feed.item",
    "feed.polled",
]
#: Every event type, in contract order.
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _none_is_empty(value: object) -> object:
    return {} if value is None else value


class Refs(_Model):
    """What a publication is evidence for. A CMS sets these to link a page to its subject."""

    incident_id: Id | None = None
    document_id: Id | None = None
    decision_id: Id | None = None
    application_id: Id | None = None
    opinion_id: Id | None = None
    change_id: Id | None = None


class OpinionRefs(_Model):
    incident_id: Id | None = None


class _Event(_Model):
    event_id: Id
    unit: Id
    source: Id | None = Field(
        default=None, description="The sending system (CMS, feed, incident system), if known."
    )


class _Incident(_Event):
    incident_id: Id
    occurred_at: Instant
    title: Text
    severity: Severity
    deaths: Count | None = None
    injured: Count | None = Field(default=None, description="Serious injuries.")
    social_impact: Literal["significant"] | None = None


class IncidentReported(_Incident):
    type: Literal["incident.reported"]


class IncidentUpdated(_Incident):
    """The incident as now known; it replaces earlier reports and updates."""

    type: Literal["incident.updated"]


class DocumentIssued(_Event):
    type: Literal["document.issued"]
    document_id: Id
    issued_at: DayOrInstant
    kind: DocumentKind
    disclosure: Disclosure
    title: Text


class DocumentPublished(_Event):
    type: Literal["document.published"]
    publication_id: Id
    published_at: DayOrInstant
    kind: PublicationKind
    channel: Id
    url: Url
    refs: Annotated[Refs, BeforeValidator(_none_is_empty)] = Field(default_factory=Refs)
    title: Text | None = None


class DecisionMade(_Event):
    type: Literal["decision.made"]
    decision_id: Id
    decided_at: DayOrInstant
    kind: DecisionKind


class OrgChanged(_Event):
    type: Literal["org.changed"]
    change_id: Id
    completed_at: DayOrInstant


class ApplicationReceived(_Event):
    type: Literal["application.received"]
    application_id: Id
    received_at: DayOrInstant


class _ApplicationStep(_Event):
    application_id: Id
    at: DayOrInstant


class ApplicationCorrectionRequested(_ApplicationStep):
    type: Literal["application.correction_requested"]


class ApplicationCorrected(_ApplicationStep):
    type: Literal["application.corrected"]


class ApplicationConsultationStarted(_ApplicationStep):
    type: Literal["application.consultation_started"]


class ApplicationConsultationEnded(_ApplicationStep):
    type: Literal["application.consultation_ended"]


class ApplicationExtended(_ApplicationStep):
    type: Literal["application.extended"]
    working_days: int = Field(ge=1, le=20, strict=True)


class OpinionDetected(_Event):
    type: Literal["opinion.detected"]
    opinion_id: Id
    detected_at: Instant
    topic: OpinionTopic
    title: Text
    url: Url
    refs: Annotated[OpinionRefs, BeforeValidator(_none_is_empty)] = Field(
        default_factory=OpinionRefs
    )


#: How precise a feed item's ``published_at`` is (``none``: the feed gave no usable date).
FeedPrecision = Literal["second", "minute", "day", "none"]
#: What one poll of a feed source came to.
PollOutcome = Literal[
    "ok", "not_modified", "http_error", "timeout", "network_error", "parse_error", "blocked"
]
#: A feed source's id: at most 150 characters, so that a derived ``event_id`` fits in 200.
SourceId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=150, strip_whitespace=True),
    AfterValidator(_no_control),
]
_PRECISIONS_OF = {"instant": ("second", "minute"), "day": ("day",), "absent": ("none",)}


def feed_item_event_id(source_id: str, item_id: str) -> str:
    """The deterministic ``event_id`` of a feed item: ``feed:<source_id>:<h>``, ``h`` the
    first 32 hex digits of SHA-256 over the UTF-8 ``item_id``. A re-poll, a restart or an
    edited title (same ``item_id``) gives the same id, so the item is ignored as a repeat."""
    digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:32]
    return f"feed:{source_id}:{digest}"


def feed_polled_event_id(source_id: str, at: datetime) -> str:
    """The deterministic ``event_id`` of a poll: ``feed-poll:<source_id>:<epoch seconds>``."""
    return f"feed-poll:{source_id}:{int(at.timestamp())}"


class FeedItem(_Event):
    """One item seen in a feed (RSS, Atom, JSON Feed; a crawler or 舆情 system may push its
    own). ``item_id`` is the dedupe key; ``published_at`` is only what the feed said."""

    type: Literal["feed.item"]
    source_id: SourceId
    item_id: Id = Field(description="The dedupe key: the guid, else the link, else a hash.")
    title: Text
    summary: (
        Annotated[str, StringConstraints(max_length=2000), AfterValidator(_no_control_in_text)]
        | None
    ) = None
    link: Url | None = None
    author: Text | None = None
    published_at: DayOrInstant | None = Field(
        default=None, description="As the feed gave it; absent when it gave no usable date."
    )
    published_raw: Text | None = Field(default=None, description="The feed's own date text.")
    published_precision: FeedPrecision = "none"
    seen_at: Instant = Field(description="When govclock (or the sender) first saw the item.")

    @field_validator("published_precision")
    @classmethod
    def _precision_fits(cls, value: str, info: ValidationInfo) -> str:
        if "published_at" not in info.data:
            return value  # published_at failed: reported on its own
        at = info.data["published_at"]
        shape = "absent" if at is None else "instant" if isinstance(at, datetime) else "day"
        allowed = _PRECISIONS_OF[shape]
        if value not in allowed:
            raise ValueError(
                f"{value!r} does not fit published_at ({shape}); expected "
                + " or ".join(repr(a) for a in allowed)
            )
        return value


class FeedPolled(_Event):
    """One poll of a feed source and what it came to (``items``: how many it carried)."""

    type: Literal["feed.polled"]
    source_id: SourceId
    at: Instant
    outcome: PollOutcome
    http_status: int | None = Field(default=None, ge=100, le=599, strict=True)
    detail: Text | None = None
    items: Count | None = None


Event = Annotated[
    IncidentReported
    | IncidentUpdated
    | DocumentIssued
    | DocumentPublished
    | DecisionMade
    | OrgChanged
    | ApplicationReceived
    | ApplicationCorrectionRequested
    | ApplicationCorrected
    | ApplicationConsultationStarted
    | ApplicationConsultationEnded
    | ApplicationExtended
    | OpinionDetected
    | FeedItem
    | FeedPolled,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: The model of each event type.
EVENT_MODELS: dict[str, type[BaseModel]] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(get_args(Event)[0])
}
assert tuple(EVENT_MODELS) == EVENT_TYPES, "schemas: EventType and the Event union disagree"

#: The identifier fields each event type carries at its top level, in REF_FIELDS order.
OWN_REF_FIELDS: dict[str, tuple[str, ...]] = {
    t: tuple(f for f in REF_FIELDS if f in m.model_fields) for t, m in EVENT_MODELS.items()
}

#: The field that says when each event happened (its own time, used as the replay clock).
TIME_FIELD: dict[str, str] = {
    "incident.reported": "occurred_at",
    "incident.updated": "occurred_at",
    "document.issued": "issued_at",
    "document.published": "published_at",
    "decision.made": "decided_at",
    "org.changed": "completed_at",
    "application.received": "received_at",
    "application.correction_requested": "at",
    "application.corrected": "at",
    "application.consultation_started": "at",
    "application.consultation_ended": "at",
    "application.extended": "at",
    "opinion.detected": "detected_at",
    "feed.item": "seen_at",
    "feed.polled": "at",
}
#: The feed event types: they name no subject (no rule reads them yet), so they open and
#: close nothing; they are kept in the log for dedupe, source health and freshness.
FEED_TYPES = frozenset({"feed.item", "feed.polled"})


#: The ``field`` of a problem with the event as a whole (not JSON, not an object).
WHOLE = "(event)"


class FieldError(_Model):
    """One problem with one field, by its dotted path (``refs.incident_id``), or :data:`WHOLE`."""

    field: str
    message: str


class EventError(ValueError):
    """An event that does not meet the contract; ``errors`` names every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


def _field_errors(exc: ValidationError) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        # Drop the discriminator tag pydantic puts first ("document.published", ...) and the
        # union member names of DayOrInstant ("datetime", "date").
        if loc and loc[0] in EVENT_TYPES:
            loc = loc[1:]
        # A DayOrInstant failure names the union member it tried ("datetime", "date").
        if len(loc) >= 2 and loc[-2] in _DAY_OR_INSTANT_FIELDS and loc[-1] in ("datetime", "date"):
            loc = loc[:-1]
        path = ".".join(loc) or WHOLE
        out.append(FieldError(field=path, message=err["msg"]))
    # One message per field: a date-or-instant failure reports once per union member.
    seen: set[str] = set()
    unique: list[FieldError] = []
    for e in out:
        if e.field not in seen:
            seen.add(e.field)
            unique.append(e)
    return unique


def parse_event(data: Any) -> Event:
    """Validate one event given as a dict; raise :class:`EventError` naming the bad fields."""
    if not isinstance(data, dict):
        raise EventError([FieldError(field=WHOLE, message="an event must be a JSON object")])
    if "type" not in data:
        raise EventError(
            [FieldError(field="type", message="missing; one of " + ", ".join(EVENT_TYPES))]
        )
    if data["type"] not in EVENT_TYPES:
        raise EventError(
            [
                FieldError(
                    field="type",
                    message=f"unknown event type {data['type']!r}; one of "
                    + ", ".join(EVENT_TYPES),
                )
            ]
        )
    try:
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventError(_field_errors(exc)) from None


def decode_event(text: str | bytes) -> tuple[Any, Event]:
    """One event given as JSON text (a line of a history or of an NDJSON body): the decoded
    JSON and the validated event; raise :class:`EventError` as :func:`parse_event` does."""
    try:
        data = orjson.loads(text)  # nesting over 1,024 deep, NaN, lone surrogates: refused
    except orjson.JSONDecodeError as exc:
        raise EventError([FieldError(field=WHOLE, message=f"not valid JSON: {exc}")]) from None
    return data, parse_event(data)


def parse_event_json(text: str | bytes) -> Event:
    """Validate one event given as JSON text."""
    return decode_event(text)[1]


def event_time(event: Event) -> datetime | date:
    """When the event happened, by its own clock (see :data:`TIME_FIELD`)."""
    value: datetime | date = getattr(event, TIME_FIELD[event.type])
    return value
