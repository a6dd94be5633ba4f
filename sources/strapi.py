"""Strapi webhooks (``entry.publish``) -> events.

Strapi's body is ``{"event": "entry.publish", "model": "article", "entry": {...}}`` (header
``X-Strapi-Event``). Only ``entry.publish`` is a publication; other events are refused
with the reason. Strapi is headless, so the page's public address comes from the entry's
``govclock_url`` field or, failing that, from the source's URL template (``url_template``,
e.g. ``https://www.sh.example/{model}/{slug}``; placeholders ``{model}``, ``{id}``,
``{documentId}``, ``{slug}``, ``{locale}``, each percent-encoded).

Fields a content type adds for govclock (docs/integrations.md):

- ``govclock_refs`` (JSON): ``{"incident_id": "I-2026-031"}``, the contract's ``refs`` keys;
- ``govclock_kind`` (enumeration): a publication kind, default ``news``;
- ``govclock_channel`` (text): default ``portal``;
- ``govclock_url`` (text): the public URL, when no template fits.

The entry's id is ``documentId`` (Strapi 5) or ``id`` (Strapi 4); ``publication_id`` is
``<model>:<id>`` (ids are per content type), with ``:<locale>`` for localised entries.
``event_id`` adds ``updatedAt``, so a retry is the same event.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from sources.common import (
    AdapterError,
    field_refs,
    instant,
    load_json,
    optional_text,
    publication,
    require_object,
    require_str,
    stable_id,
)

NAME = "strapi"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")


def _url_from_template(template: str, values: dict[str, str | None]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise AdapterError(
                f"{NAME}: URL template placeholder {{{key}}} unknown; one of "
                + ", ".join("{" + k + "}" for k in values)
            )
        value = values[key]
        if value is None:
            raise AdapterError(f"{NAME}: URL template needs {{{key}}} but entry.{key} is missing")
        return quote(value, safe="")

    return _PLACEHOLDER.sub(sub, template)


def to_events(
    payload: Any,
    *,
    unit: str,
    source: str,
    received_at: int,
    url_template: str | None = None,
) -> list[dict[str, Any]]:
    body = require_object(load_json(payload, NAME), "body", NAME)
    event = body.get("event")
    if event != "entry.publish":
        raise AdapterError(
            f"{NAME}: event {event!r} is not a publication; only entry.publish is recorded"
        )
    model = require_str(body, "model", "body", NAME)
    entry = require_object(body.get("entry"), "entry", NAME)

    ident = optional_text(entry.get("documentId"))
    if ident is None:
        ident = require_str(entry, "id", "entry", NAME)
    locale = optional_text(entry.get("locale"))
    published_at = instant(
        require_str(entry, "publishedAt", "entry", NAME), "entry.publishedAt", NAME, received_at
    )
    updated_at = optional_text(entry.get("updatedAt")) or published_at

    url = optional_text(entry.get("govclock_url"))
    if url is None:
        if url_template is None:
            raise AdapterError(
                f"{NAME}: entry.govclock_url missing and no URL template is configured for "
                "this source; govclock needs the page's public URL"
            )
        id_value = entry.get("id")
        url = _url_from_template(
            url_template,
            {
                "model": model,
                "id": None if id_value is None else str(id_value),
                "documentId": optional_text(entry.get("documentId")),
                "slug": optional_text(entry.get("slug")),
                "locale": locale,
            },
        )

    tags = field_refs(entry.get("govclock_refs"), "entry.govclock_refs", NAME)
    kind = optional_text(entry.get("govclock_kind"))
    if kind is not None:
        tags.set("kind", kind, "entry.govclock_kind", NAME)
    channel = optional_text(entry.get("govclock_channel"))
    if channel is not None:
        tags.set("channel", channel, "entry.govclock_channel", NAME)

    publication_id = f"{model}:{ident}" + (f":{locale}" if locale else "")
    title = optional_text(entry.get("title")) or optional_text(entry.get("name"))
    return [
        publication(
            event_id=stable_id(source, NAME, publication_id, updated_at),
            unit=unit,
            source=source,
            publication_id=publication_id,
            published_at=published_at,
            url=url,
            title=title,
            tags=tags,
        )
    ]
