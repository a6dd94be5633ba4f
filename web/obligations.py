"""``GET /v1/obligations`` and ``GET /v1/obligations/{id}``: the obligations of the cluster.

The list answers for the whole cluster: this worker's partitions from its own ledgers, every
other worker's (from the subjects table's assignment) asked with the same filters and
``?local=1``; merged, each id once, by due time (the query and its cursor: web/paging.py).
``partial`` with ``missing_partitions`` when some partition was not answered (a worker down,
slow or recovering). One obligation is answered by the worker that owns its subject, or,
once it settled and left the hot state, from the archive (``"archived": true``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable
from yarl import URL

from deadlines.report import obligation_view
from deadlines.rules import RuleBook
from streams.topics import SUBJECTS_TABLE
from web.paging import QueryError, encode_cursor, local_page, parse_query, view_key
from web.peers import Peers, forwarded, obligation_path
from web.responses import json_response

if TYPE_CHECKING:
    from worker.context import Context

log = logging.getLogger("govclock.web")

#: How long the receiving worker waits for each other worker's part of the list.
LIST_PEER_TIMEOUT_S = 5.0


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


class Obligations:
    """The two routes' work, and finding one obligation anywhere in the cluster."""

    def __init__(self, ctx: Context, peers: Peers) -> None:
        self.ctx = ctx
        self.peers = peers

    def answering_partitions(self) -> list[int]:
        """The partitions this worker answers the list for: those it owns, once it is ready
        (tables recovered, ledgers rebuilt, start-up backlog through); none before."""
        return self.ctx.assigned() if self.ctx.caught_up() else []

    async def peer_list(self, url: str, query: Mapping[str, str]) -> Any:
        """Another worker's own part of the list (``?local=1``)."""
        target = URL(url).with_path("/v1/obligations").with_query({**query, "local": "1"})
        return await self.peers.get_part(target, LIST_PEER_TIMEOUT_S)

    async def list(self, view: View, request: Request) -> Response:
        """``GET /v1/obligations``."""
        http: Any = request
        try:
            query = parse_query(request.query)
        except QueryError as exc:
            return view.json({"error": str(exc), "parameter": exc.parameter}, status=400)
        mine = self.answering_partitions()
        indexes = [ix for p, ix in sorted(self.ctx.worker.indexes.items()) if p in mine]
        views, last = await local_page(indexes, query)
        local = {
            "obligations": views,
            "partitions": mine,
            "next": encode_cursor(last, query.filters) if last else None,
        }
        if request.query.get("local") in ("1", "true") or forwarded(http.headers):
            return json_response(view, local)
        peers = self.peers.others(SUBJECTS_TABLE)
        params = query.peer_params(request.query.get("cursor"))
        answers = await asyncio.gather(
            *(self.peer_list(u, params) for u in peers), return_exceptions=True
        )
        parts: list[dict[str, Any]] = [{"url": self.peers.here(), "answer": local}]
        for url, answer in zip(peers, answers, strict=True):
            if isinstance(answer, BaseException):
                error = f"{type(answer).__name__}: {answer}".rstrip(": ")
                self.ctx.app.log.warning(f"govclock: {url} did not answer the list: {error}")
                parts.append({"url": url, "answer": None, "error": error})
            else:
                parts.append({"url": url, "answer": answer})
        merged = merge_obligation_lists(parts, self.ctx.settings.partitions, query.limit)
        more = merged.pop("more")
        obs = merged["obligations"]
        merged["next"] = encode_cursor(view_key(obs[-1]), query.filters) if more else None
        return json_response(view, merged)

    async def one(self, view: View, request: Request, obligation_id: str) -> Response:
        """``GET /v1/obligations/{obligation_id}``."""
        ctx = self.ctx
        home = home_subject(obligation_id, ctx.book)
        if home is not None:
            try:  # answered by the worker that owns the obligation's subject
                response: Response = await ctx.app.router.route_req(
                    SUBJECTS_TABLE, home.encode(), view.web, request
                )
                return response
            except SameNode:
                pass
            except ServiceUnavailable:
                return view.json({"error": "the owning worker is not known yet"}, status=503)
        ob = ctx.worker.find(obligation_id)
        if ob is not None:
            return view.json(obligation_view(ob))
        http: Any = request
        if home is None and not forwarded(http.headers):
            found = await self.find(obligation_id)  # the id names no subject: ask all
            if found is not None:
                return view.json(found)
        archived = await self.archived(obligation_id)
        if archived is not None:
            return view.json(archived)
        return view.json({"error": f"no obligation {obligation_id!r} here"}, status=404)

    async def archived(self, obligation_id: str) -> dict[str, Any] | None:
        """The obligation as the archive holds it (``archived: true``), if it settled."""
        archive = self.ctx.archive
        if archive is None:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, archive.get, obligation_id)

    async def find(self, obligation_id: str) -> dict[str, Any] | None:
        """``GET /v1/obligations/{id}``'s JSON: from this worker's ledgers, else from the
        worker that owns the obligation's subject (or, when the id does not say which subject
        it lives on, from each other worker)."""
        ctx = self.ctx
        ob = ctx.worker.find(obligation_id)
        if ob is not None:
            return obligation_view(ob)
        home = home_subject(obligation_id, ctx.book)
        peers: list[URL] = []
        if home is not None:
            try:
                peers = [ctx.app.router.key_store(SUBJECTS_TABLE, home.encode())]
            except KeyError:
                return None
        else:
            peers = [URL(str(u)) for u in ctx.app.router.table_metadata(SUBJECTS_TABLE)]
        for peer in peers:
            if self.peers.is_here(peer):
                continue
            url = URL(str(peer).rstrip("/") + obligation_path(obligation_id), encoded=True)
            try:
                found = await self.peers.get_json(url)
            except Exception as exc:  # a worker down: the others may still have it
                log.warning("obligation %s: %s did not answer: %r", obligation_id, peer, exc)
                continue
            if isinstance(found, dict):
                return found
        return None


def register(ctx: Context, obligations: Obligations) -> None:
    @ctx.app.page("/v1/obligations")
    class ObligationsView(View):
        """The obligations of the whole cluster (``?local=1``: this worker's part only)."""

        async def get(self, request: Request) -> Response:
            return await obligations.list(self, request)

    @ctx.app.page("/v1/obligations/{obligation_id}")
    class ObligationView(View):
        async def get(self, request: Request, obligation_id: str) -> Response:
            return await obligations.one(self, request, obligation_id)
