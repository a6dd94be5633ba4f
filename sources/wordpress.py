"""WordPress post objects (the REST API's ``/wp/v2/posts`` shape) -> events.

WordPress has no webhooks of its own: a small plugin (or WP Webhooks) posts the REST
representation of a post when it is published, ideally with ``_embed`` so tag names are
included. One post object gives one ``document.published``; a list (a collection, e.g. to
backfill) gives one per post and fails whole, naming the index, if any post is refused.

- only ``status: publish`` and not password-protected;
- ``published_at`` is ``date_gmt`` + ``Z``: WordPress gives it without an offset, but it is
  UTC by definition (``date`` is site-local time with no offset, so it is never used);
- ``url`` is ``link`` (the permalink), ``title`` is ``title.rendered`` as plain text;
- refs from post meta ``govclock_refs`` (a JSON object with the contract's ``refs`` keys,
  registered with ``show_in_rest``) and/or from tags named like Ghost's internal tags
  (``#incident:I-2026-031``, ``#kind:press_release``) found in ``_embedded["wp:term"]``;
  ``govclock_kind`` / ``govclock_channel`` meta set the kind (default ``news``) and channel
  (default ``portal``). See docs/integrations.md.

``event_id`` = ``<source>:wordpress:<id>:<modified_gmt>``, so a retry is the same event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sources.common import (
    AdapterError,
    field_refs,
    instant,
    load_json,
    optional_text,
    plain_text,
    publication,
    require_object,
    require_str,
    stable_id,
    tag_refs,
)

NAME = "wordpress"
_NAIVE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def _gmt(value: str, where: str, received_at: int | None) -> str:
    if _NAIVE.match(value):
        value += "Z"  # *_gmt fields are UTC without a designator
    return instant(value, where, NAME, received_at)


def _term_names(post: Mapping[str, Any], where: str) -> list[str]:
    embedded = post.get("_embedded")
    if not isinstance(embedded, Mapping):
        return []
    groups = embedded.get("wp:term") or []
    if not isinstance(groups, list):
        raise AdapterError(f"{NAME}: {where}._embedded.wp:term is not a list")
    names: list[str] = []
    for group in groups:
        for term in group if isinstance(group, list) else []:
            if isinstance(term, Mapping) and term.get("taxonomy") == "post_tag":
                name = term.get("name")
                if isinstance(name, str):
                    names.append(plain_text(name))  # term names come HTML-escaped
    return names


def _post_event(
    post: Any, where: str, *, unit: str, source: str, received_at: int
) -> dict[str, Any]:
    post = require_object(post, where, NAME)
    status = post.get("status")
    if status != "publish":
        raise AdapterError(
            f"{NAME}: {where}.status is {status!r}, not 'publish'; only a live post is evidence"
        )
    content = post.get("content")
    if isinstance(content, Mapping) and content.get("protected"):
        raise AdapterError(
            f"{NAME}: {where}.content.protected is true; a password-protected post is not "
            "public disclosure"
        )
    ident = require_str(post, "id", where, NAME)
    published_at = _gmt(
        require_str(post, "date_gmt", where, NAME), f"{where}.date_gmt", received_at
    )
    modified = optional_text(post.get("modified_gmt"))
    updated_at = _gmt(modified, f"{where}.modified_gmt", None) if modified else published_at
    url = require_str(post, "link", where, NAME)

    title_obj = post.get("title")
    title_html = title_obj.get("rendered") if isinstance(title_obj, Mapping) else title_obj
    title = plain_text(title_html) if isinstance(title_html, str) else None

    meta = post.get("meta")
    if not isinstance(meta, Mapping):
        meta = {}  # PHP serialises an empty meta as [] (a list)
    tags = field_refs(meta.get("govclock_refs"), f"{where}.meta.govclock_refs", NAME)
    for key in ("kind", "channel"):
        value = optional_text(meta.get(f"govclock_{key}"))
        if value is not None:
            tags.set(key, value, f"{where}.meta.govclock_{key}", NAME)
    names = _term_names(post, where)
    tags.merge(tag_refs(names, f"{where} tag", NAME), f"{where} tags", NAME)

    return publication(
        event_id=stable_id(source, NAME, ident, updated_at),
        unit=unit,
        source=source,
        publication_id=ident,
        published_at=published_at,
        url=url,
        title=optional_text(title),
        tags=tags,
    )


def to_events(payload: Any, *, unit: str, source: str, received_at: int) -> list[dict[str, Any]]:
    data = load_json(payload, NAME)
    if isinstance(data, list):
        if not data:
            raise AdapterError(f"{NAME}: empty list; nothing to record")
        return [
            _post_event(p, f"[{i}]", unit=unit, source=source, received_at=received_at)
            for i, p in enumerate(data)
        ]
    return [_post_event(data, "post", unit=unit, source=source, received_at=received_at)]
