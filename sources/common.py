"""Adapters: real payloads from CMSs and incident systems -> events of the contract.

Each adapter module (:mod:`.ghost`, :mod:`.strapi`, :mod:`.wordpress`, :mod:`.cap`) has::

    to_events(payload, *, unit, source, received_at) -> list[dict]

- ``payload``: the request body (bytes or text), or JSON already decoded;
- ``unit``: the responsible unit configured for the sending source (never taken from the
  payload, so one unit's CMS cannot file evidence for another);
- ``source``: the verified source name (``web.signing.verify``), copied into each event
  and into its ``event_id``;
- ``received_at``: when the request arrived, Unix seconds (publications dated more than
  :data:`FUTURE_SKEW_S` after it are refused as not yet live).

It returns event dicts of ``schemas/events.py`` (the caller validates each with
``parse_event``) or raises :class:`AdapterError`, whose reason starts with the adapter's name
and says what is wrong and where (``ghost: post.current.published_at missing``). Adapters are
pure: no I/O, no clock. ``event_id`` is built from the source's own id and its updated time,
so a webhook retry maps to the same event and is ignored as a repeat.

The conventions a CMS uses to say what a page is evidence for (``refs``) and which kind of
publication it is are shared here; docs/integrations.md explains them for integrators.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, get_args

import orjson

from schemas.events import INSTANT_RE, REF_FIELDS, PublicationKind
from schemas.times import FUTURE_SKEW_S

__all__ = [
    "ADAPTER_NAMES",
    "CAP_CONTENT_TYPES",
    "DEFAULT_CHANNEL",
    "DEFAULT_KIND",
    "FUTURE_SKEW_S",
    "PUBLICATION_KINDS",
    "TAG_KEYS",
    "Adapter",
    "AdapterError",
    "TagRefs",
    "get_adapter",
]

#: The adapters by name (the ``/v1/events`` route or source configuration picks one).
ADAPTER_NAMES = ("ghost", "strapi", "wordpress", "cap")
#: Content types the CAP adapter takes (the web view answers 415 to unknown ones).
CAP_CONTENT_TYPES = ("application/cap+xml",)
#: A publication's kind when the CMS says nothing.
DEFAULT_KIND = "news"
#: A publication's channel when the CMS says nothing: the unit's web portal.
DEFAULT_CHANNEL = "portal"
PUBLICATION_KINDS: tuple[str, ...] = get_args(PublicationKind)

MAX_ID = 200
MAX_TEXT = 2000

#: Tag keys (``#incident:I-2026-031``) -> the ``refs`` field they set.
_REF_TAG_KEYS: dict[str, str] = {f.removesuffix("_id"): f for f in REF_FIELDS}
_REF_TAG_KEYS.update({f: f for f in REF_FIELDS})
#: Every key a govclock tag may have.
TAG_KEYS: tuple[str, ...] = (*(f.removesuffix("_id") for f in REF_FIELDS), "kind", "channel")
#: ``#key:value``; a full-width colon (``#incident：I-1``, easy to type with a Chinese IME) too.
_TAG = re.compile(r"^#\s*([A-Za-z][A-Za-z_-]*)\s*[:：]\s*(.*)$", re.S)


class AdapterError(ValueError):
    """A payload that cannot become events; ``reason`` says what and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Adapter(Protocol):
    def __call__(
        self, payload: Any, *, unit: str, source: str, received_at: int
    ) -> list[dict[str, Any]]: ...


def get_adapter(name: str) -> Adapter:
    """The ``to_events`` of the adapter called ``name`` (one of :data:`ADAPTER_NAMES`)."""
    from . import cap, ghost, strapi, wordpress

    table: dict[str, Adapter] = {
        "ghost": ghost.to_events,
        "strapi": strapi.to_events,
        "wordpress": wordpress.to_events,
        "cap": cap.to_events,
    }
    if name not in table:
        raise KeyError(f"unknown adapter {name!r}; one of {', '.join(ADAPTER_NAMES)}")
    return table[name]


# --- shared helpers --------------------------------------------------------------------------


def load_json(payload: Any, adapter: str) -> Any:
    """Decode a JSON body (bytes or text); decoded JSON passes through unchanged."""
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            text = bytes(payload).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise AdapterError(f"{adapter}: body is not UTF-8 ({exc.reason})") from None
    elif isinstance(payload, str):
        text = payload
    else:
        return payload
    try:  # orjson refuses nesting over 1,024 deep, NaN and lone surrogates
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise AdapterError(f"{adapter}: body is nested too deeply ({exc})") from None
        raise AdapterError(f"{adapter}: body is not valid JSON ({exc})") from None


def stable_id(*parts: object) -> str:
    """Join ``parts`` with ``:`` into an id; past 200 characters keep the first two parts
    and a SHA-256 of the whole (still deterministic)."""
    text = ":".join(str(p).strip() for p in parts)
    if len(text) <= MAX_ID:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    head = ":".join(str(p).strip() for p in parts[:2])[: MAX_ID - 80]
    return f"{head}:sha256:{digest}"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Whitespace collapsed, at most ``limit`` characters (an ellipsis marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TAG_RE = re.compile(r"<[^>]*>")


def plain_text(rendered: str) -> str:
    """Text of a small HTML fragment (a rendered title): tags dropped, entities decoded."""
    return html.unescape(_TAG_RE.sub("", rendered))


def require(obj: Mapping[str, Any], key: str, where: str, adapter: str) -> Any:
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise AdapterError(f"{adapter}: {where}.{key} missing")
    return value


def require_str(obj: Mapping[str, Any], key: str, where: str, adapter: str) -> str:
    value = require(obj, key, where, adapter)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AdapterError(f"{adapter}: {where}.{key} is not a string: {value!r}")
    return str(value).strip()


def require_object(obj: Any, where: str, adapter: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise AdapterError(f"{adapter}: {where} is not a JSON object")
    return obj


def instant(value: str, where: str, adapter: str, received_at: int | None = None) -> str:
    """An RFC 3339 timestamp with an offset, not later than arrival + skew if given."""
    if not INSTANT_RE.match(value):
        raise AdapterError(
            f"{adapter}: {where} {value!r} is not a timestamp with an offset "
            "(e.g. 2026-03-09T14:20:00+08:00)"
        )
    if received_at is not None:
        try:
            at = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise AdapterError(f"{adapter}: {where} {value!r} is not a valid time") from None
        ahead = at.timestamp() - received_at
        if ahead > FUTURE_SKEW_S:
            raise AdapterError(
                f"{adapter}: {where} {value} is {int(ahead)} s after the request arrived; a "
                "publication is sent when it is live, not before (scheduled?)"
            )
    return value


@dataclass
class TagRefs:
    """What govclock tags (or fields) on a page say: its ``refs``, kind and channel."""

    refs: dict[str, str] = field(default_factory=dict)
    kind: str | None = None
    channel: str | None = None

    def set(self, key: str, value: str, where: str, adapter: str) -> None:
        value = value.strip()
        if not value:
            raise AdapterError(f"{adapter}: {where}: empty value for {key!r}")
        if len(value) > MAX_ID:
            raise AdapterError(f"{adapter}: {where}: {key} longer than {MAX_ID} characters")
        old: str | None
        if key == "kind":
            if value not in PUBLICATION_KINDS:
                raise AdapterError(
                    f"{adapter}: {where}: unknown kind {value!r}; one of "
                    + ", ".join(PUBLICATION_KINDS)
                )
            old, self.kind = self.kind, value
        elif key == "channel":
            old, self.channel = self.channel, value
        else:
            old = self.refs.get(key)
            self.refs[key] = value
        if old is not None and old != value:
            raise AdapterError(
                f"{adapter}: {where}: two different values for {key}: {old!r}, {value!r}"
            )

    def merge(self, other: TagRefs, where: str, adapter: str) -> None:
        for key, value in other.refs.items():
            self.set(key, value, where, adapter)
        if other.kind is not None:
            self.set("kind", other.kind, where, adapter)
        if other.channel is not None:
            self.set("channel", other.channel, where, adapter)


def tag_refs(names: Iterable[str], where: str, adapter: str) -> TagRefs:
    """Read govclock tags: ``#incident:I-2026-031``, ``#document:沪府规〔2026〕3号``,
    ``#kind:press_release``, ``#channel:weibo`` (keys also as ``#incident_id:``).

    Tags without ``#`` or without ``:`` are ordinary tags and ignored; ``#key:value`` with a
    key of another tool is ignored too, unless it looks like a misspelt govclock key
    (``#incidnet:``), which is an error rather than a silently lost link.
    """
    out = TagRefs()
    for name in names:
        m = _TAG.match(name.strip())
        if not m:
            continue
        key, value = m.group(1).lower().replace("-", "_"), m.group(2)
        if key in _REF_TAG_KEYS:
            out.set(_REF_TAG_KEYS[key], value, f"{where} {name!r}", adapter)
        elif key in ("kind", "channel"):
            out.set(key, value, f"{where} {name!r}", adapter)
        else:
            near = difflib.get_close_matches(key, [*_REF_TAG_KEYS, "kind", "channel"], 1, 0.75)
            if near:
                raise AdapterError(
                    f"{adapter}: {where} {name!r}: unknown govclock key {key!r}; did you mean "
                    f"'#{near[0]}:'?"
                )
    return out


def field_refs(value: Any, where: str, adapter: str) -> TagRefs:
    """Read a ``govclock_refs`` field: a JSON object with the contract's ``refs`` keys
    (``{"incident_id": "I-2026-031"}``), or the same as JSON text. Null/empty: no refs."""
    out = TagRefs()
    if value is None or value == "" or value == [] or value == {}:
        return out
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise AdapterError(
                f'{adapter}: {where} is not a JSON object such as {{"incident_id": "I-2026-031"}}'
            ) from None
    if not isinstance(value, Mapping):
        raise AdapterError(
            f'{adapter}: {where} is not a JSON object such as {{"incident_id": "I-2026-031"}}'
        )
    for key, ref in value.items():
        if key not in REF_FIELDS:
            near = difflib.get_close_matches(str(key), REF_FIELDS, 1, 0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise AdapterError(
                f"{adapter}: {where}.{key}: unknown refs key; one of "
                + ", ".join(REF_FIELDS)
                + hint
            )
        if ref is None or ref == "":
            continue
        if not isinstance(ref, str | int) or isinstance(ref, bool):
            raise AdapterError(f"{adapter}: {where}.{key} is not a string: {ref!r}")
        out.set(str(key), str(ref), where, adapter)
    return out


def optional_text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def publication(
    *,
    event_id: str,
    unit: str,
    source: str,
    publication_id: str,
    published_at: str,
    url: str,
    title: str | None,
    tags: TagRefs,
) -> dict[str, Any]:
    """A ``document.published`` event dict (``refs`` omitted when empty, as the docs ask)."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "type": "document.published",
        "unit": unit,
        "source": source,
        "publication_id": publication_id,
        "published_at": published_at,
        "kind": tags.kind or DEFAULT_KIND,
        "channel": tags.channel or DEFAULT_CHANNEL,
        "url": url,
    }
    if title:
        event["title"] = clip(title)
    if tags.refs:
        event["refs"] = dict(tags.refs)
    return event
