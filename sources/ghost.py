"""Ghost webhooks (``post.published``, ``page.published`` and their ``.edited``) -> events.

Ghost's body is ``{"post": {"current": {...}, "previous": {...}}}`` (``"page"`` for pages);
it does not name the webhook event, so the adapter judges by ``current``: a post or page
that is ``status: published``, ``visibility: public`` and not email-only becomes one
``document.published``; anything else (draft, scheduled, deleted, members-only) is refused
with the reason.

What the page is evidence for is said with Ghost **internal tags** (names starting with
``#``, never shown to readers): ``#incident:I-2026-031``, ``#document:沪府规〔2026〕3号``,
``#decision:…``, ``#application:…``, ``#opinion:…``, ``#change:…``, plus ``#kind:press_release``
(default ``news``) and ``#channel:weibo`` (default ``portal``). See docs/integrations.md.

``event_id`` = ``<source>:ghost:<post|page>:<id>:<updated_at>``: a retry is the same event,
an edit (for instance a tag added after publishing) is a new one with the same
``publication_id`` and ``published_at``.
"""

from __future__ import annotations

from typing import Any

from sources.common import (
    AdapterError,
    instant,
    load_json,
    optional_text,
    publication,
    require_object,
    require_str,
    stable_id,
    tag_refs,
)

NAME = "ghost"


def to_events(payload: Any, *, unit: str, source: str, received_at: int) -> list[dict[str, Any]]:
    body = require_object(load_json(payload, NAME), "body", NAME)
    what = [k for k in ("post", "page") if k in body]
    if len(what) != 1:
        keys = ", ".join(sorted(map(str, body))) or "none"
        raise AdapterError(
            f"{NAME}: expected one 'post' or 'page' object (post.published / page.published "
            f"webhooks); body keys: {keys}"
        )
    kind = what[0]
    wrapper = require_object(body[kind], kind, NAME)
    where = f"{kind}.current"
    current = wrapper.get("current")
    if not current:
        raise AdapterError(f"{NAME}: {where} is empty (a deleted {kind}); nothing to record")
    current = require_object(current, where, NAME)

    status = current.get("status")
    if status != "published":
        raise AdapterError(
            f"{NAME}: {where}.status is {status!r}, not 'published'; only a live {kind} is "
            "evidence (subscribe to post.published / page.published and their .edited)"
        )
    visibility = current.get("visibility", "public")
    if visibility != "public":
        raise AdapterError(
            f"{NAME}: {where}.visibility is {visibility!r}; only a public {kind} counts as "
            "disclosure"
        )
    if current.get("email_only"):
        raise AdapterError(f"{NAME}: {where}.email_only is true; a newsletter is not a web page")

    ident = require_str(current, "id", where, NAME)
    published_at = instant(
        require_str(current, "published_at", where, NAME),
        f"{where}.published_at",
        NAME,
        received_at,
    )
    updated_at = optional_text(current.get("updated_at")) or published_at
    url = require_str(current, "url", where, NAME)

    tags = current.get("tags") or []
    if not isinstance(tags, list):
        raise AdapterError(f"{NAME}: {where}.tags is not a list")
    names: list[str] = []
    for i, tag in enumerate(tags):
        tag = require_object(tag, f"{where}.tags[{i}]", NAME)
        name = tag.get("name")
        if isinstance(name, str):
            names.append(name)
    refs = tag_refs(names, f"{where}.tags", NAME)

    return [
        publication(
            event_id=stable_id(source, NAME, kind, ident, updated_at),
            unit=unit,
            source=source,
            publication_id=ident,
            published_at=published_at,
            url=url,
            title=optional_text(current.get("title")),
            tags=refs,
        )
    ]
