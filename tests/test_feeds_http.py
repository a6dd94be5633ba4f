"""The feed fetcher and parser against a real HTTP server on 127.0.0.1 (aiohttp.web).

Every file of ``../shared/corpus/feeds/`` (feedparser's corpus and the Chinese feeds in
``zh/``) is served with the headers its ``Header:`` comment lines give, fetched through the
real fetcher and parsed: none crashes, each gives items or a ``parse_error`` with a reason.
Then the HTTP behaviours: conditional GET and 304, 429 with Retry-After, 503, blocked pages,
a read timeout, a body over the cap (declared and chunked), a slow-loris server, a refused
connection. The corpus is read in place, never copied into the repository.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from feeds.fetch import FetchLimits, FetchResult, fetch, next_poll, parse_retry_after, poll
from schemas.events import parse_event
from sources.feeds import parse_feed, read_date

pytestmark = pytest.mark.timeout(60)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "feeds"
NOT_FEEDS = {"LICENSE", "MANIFEST.md"}
FILES = sorted(
    p.relative_to(CORPUS).as_posix()
    for p in (CORPUS.rglob("*") if CORPUS.is_dir() else ())
    if p.is_file() and p.name not in NOT_FEEDS
)


def test_the_corpus_is_beside_the_checkout() -> None:
    """CI always has ../shared; without it the corpus tests would prove nothing."""
    assert len(FILES) > 50, f"{CORPUS} holds {len(FILES)} feed files"


CST = timezone(timedelta(hours=8))
AT = datetime(2026, 4, 20, 12, 0, tzinfo=CST)
FAST = FetchLimits(connect_s=1.0, read_s=0.5, total_s=1.5, max_bytes=1024 * 1024)

_HEADER = re.compile(r"^Header:\s*([A-Za-z-]+):\s*(.*?)\s*$", re.M)


def declared_headers(body: bytes) -> dict[str, str]:
    """The ``Header: Name: value`` lines of a corpus file's leading comment (feedparser's
    test convention), in whatever encoding the file is written."""
    for encoding in ("utf-8", "utf-16", "utf-32", "latin-1"):
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError:
            continue
        found = _HEADER.findall(text)
        if found:
            return dict(found)
    return {}


def _content_type(name: str) -> str:
    return "application/json" if name.endswith(".json") else "application/xml"


# -- the server --------------------------------------------------------------------------


class State:
    def __init__(self) -> None:
        self.conditional: list[dict[str, str | None]] = []


async def corpus_file(request: web.Request) -> web.Response:
    path = (CORPUS / request.match_info["path"]).resolve()
    if CORPUS.resolve() not in path.parents or not path.is_file():
        raise web.HTTPNotFound()
    body = path.read_bytes()
    headers = {"Content-Type": _content_type(path.name)}
    for name, value in declared_headers(body).items():
        headers.pop("Content-Type", None) if name.lower() == "content-type" else None
        headers[name] = value
    return web.Response(body=body, headers=headers)


FEED = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
    "<item><guid>g1</guid><title>市政府新闻发布会</title><link>https://www.sh.example/1</link>"
    "<pubDate>Mon, 20 Apr 2026 09:30:00 +0800</pubDate></item></channel></rss>"
).encode()


def make_app(state: State) -> web.Application:
    async def conditional(request: web.Request) -> web.Response:
        state.conditional.append(
            {
                "if-none-match": request.headers.get("If-None-Match"),
                "if-modified-since": request.headers.get("If-Modified-Since"),
            }
        )
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(
            body=FEED,
            headers={
                "Content-Type": "application/rss+xml; charset=utf-8",
                "ETag": '"v1"',
                "Last-Modified": "Mon, 20 Apr 2026 01:30:00 GMT",
            },
        )

    async def too_many(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "120"})

    async def unavailable(request: web.Request) -> web.Response:
        when = format_datetime(AT.astimezone(UTC) + timedelta(minutes=10), usegmt=True)
        return web.Response(status=503, text="upstream failed", headers={"Retry-After": when})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")

    async def sleepy(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(body=FEED)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"<rss>" + b" " * (2 * 1024 * 1024) + b"</rss>")

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(40):
            await resp.write(b" " * 64 * 1024)
        await resp.write_eof()
        return resp

    async def trickle_ok(request: web.Request) -> web.StreamResponse:
        """The feed in small pieces with pauses: read in a loop, it arrives whole."""
        resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(FEED), 50):
            await resp.write(FEED[i : i + 50])
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    async def slow_loris(request: web.Request) -> web.StreamResponse:
        """A byte every 0.1 s: never silent for the read timeout, but never done."""
        resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(100):
                await resp.write(b" ")
                await asyncio.sleep(0.1)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    app = web.Application()
    app.router.add_get("/corpus/{path:.*}", corpus_file)
    app.router.add_get("/conditional", conditional)
    app.router.add_get("/429", too_many)
    app.router.add_get("/503", unavailable)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/sleepy", sleepy)
    app.router.add_get("/big", big)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/trickle", trickle_ok)
    app.router.add_get("/slow-loris", slow_loris)
    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, State]]:
    state = State()
    runner = web.AppRunner(make_app(state), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# -- every corpus file -------------------------------------------------------------------


async def test_every_corpus_file_is_fetched_and_parsed_or_refused_with_a_reason(
    server: tuple[str, State], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    outcomes: dict[str, Any] = {}
    for name in FILES:
        result = await poll(session, "corpus", f"{base}/corpus/{name}", "sh-gov", at=AT)
        assert result.fetch.outcome == "ok", (name, result.fetch.detail)
        parse_event(result.polled)  # the poll event meets the contract
        for item in result.items:
            parse_event(item)
        if result.polled["outcome"] == "ok":
            assert result.parsed is not None and result.parsed.outcome == "ok"
            assert result.polled["items"] == len(result.items)
        else:
            assert result.polled["outcome"] == "parse_error", name
            assert result.polled["detail"], name
        outcomes[name] = result
    assert len(outcomes) == len(FILES) >= 70
    ok = [n for n, r in outcomes.items() if r.items]
    assert len(ok) >= 30
    # feedparser's empty document and a JSON body it cannot read are refused, with reasons.
    assert (
        outcomes["feedparser/illformed/rss_empty_document.xml"].polled["outcome"] == "parse_error"
    )

    def items(name: str) -> list[dict[str, Any]]:
        return list(outcomes[name].items)

    # GB2312 bytes, declared in the XML: decoded; a naive time is read as +08:00.
    gb = items("zh/rss-parser/encoding-gb2312.xml")
    assert len(gb) == 20
    assert gb[0]["title"] == "习近平为何如此强调崇尚英雄？"
    assert gb[0]["published_at"] == "2018-09-18T14:38:10+08:00"
    assert gb[0]["published_raw"] == "2018-09-18 14:38:10"
    assert gb[0]["published_precision"] == "second"
    assert outcomes["zh/rss-parser/encoding-gb2312.xml"].parsed.encoding == "gb18030"
    # Shanghai dates stamped as UTC midnight stay that day (not the day before).
    sh = items("zh/sh-gov-rss/上海政策rss.xml")
    assert len(sh) == 47
    assert sh[0]["title"] == "关于我市事业单位性质殡葬服务机构用水、用电执行居民价格的通知"
    assert (sh[0]["published_at"], sh[0]["published_precision"]) == ("2026-04-14", "day")
    assert sh[0]["published_raw"] == "Tue, 14 Apr 2026 00:00:00 +0000"
    xinhua = items("zh/xinhua-analisi1/feeds/xinhua_china.xml")
    assert len(xinhua) == 30
    assert (xinhua[0]["published_at"], xinhua[0]["published_precision"]) == ("2026-02-14", "day")
    assert items("zh/rodel-reader/meituan.xml")[0]["published_at"] == "2025-11-21"
    # The same non-URL guid on both items: the FreshRSS fallback keeps them apart.
    mega = outcomes["zh/meganews-rss-hub/line_all.xml"]
    assert mega.parsed.guid_fallback and len(mega.items) == 2
    assert len({i["item_id"] for i in mega.items}) == 2
    assert all("link" not in i for i in mega.items)  # "✅Line_RSS已同步" is not a URL
    assert mega.items[0]["title"] == "臺九線卑南鄉路段4/19發生小貨車自撞路樹"
    # No guid at all (WeChat via RSS): hash keys, links kept.
    wechat = items("zh/wechat-feeds/MjM5MDM3NzY3NQ==.xml")
    assert len(wechat) == 20 and all(i["item_id"].startswith("hash:") for i in wechat)
    assert wechat[0]["link"].startswith("https://mp.weixin.qq.com/s/")
    # Not well-formed (bare &, unescaped <, U+0008) or with a BOM: recovered, items kept.
    for name, count in [
        ("zh/rssant/https-www-oschina-net-news-rss-show-industry.xml", 50),
        ("zh/rssant/http-www-caogen-com-adminsite-rss-xml.xml", 22),
        ("zh/rssant/https-steachs-com-feed.xml", 20),
    ]:
        assert len(items(name)) == count, name
    assert outcomes["zh/rssant/https-www-oschina-net-news-rss-show-industry.xml"].parsed.bozo
    assert (
        "recovered"
        in outcomes["zh/rssant/https-www-oschina-net-news-rss-show-industry.xml"].polled["detail"]
    )
    # ISO times with +08:00 (RSSHub-go) keep their offset.
    assert items("zh/rsshub-go/feed.xml")[0]["published_at"].endswith("+08:00")
    # Big5 declared and an HTTP charset that overrides the XML declaration.
    assert outcomes["feedparser/encoding/big5.xml"].parsed.encoding == "big5"
    assert (
        outcomes[
            "feedparser/encoding/http_application_atom_xml_gb2312_charset_overrides_encoding.xml"
        ].parsed.encoding
        == "gb18030"
    )


def test_declared_headers_are_read_from_the_comment() -> None:
    body = (CORPUS / "feedparser/encoding/bozo_http_text_plain.xml").read_bytes()
    assert declared_headers(body) == {"Content-type": "text/plain"}


# -- HTTP behaviours ---------------------------------------------------------------------


async def test_conditional_get_then_304_is_not_modified(
    server: tuple[str, State], session: aiohttp.ClientSession
) -> None:
    base, state = server
    first = await poll(session, "s1", f"{base}/conditional", "sh-gov", at=AT)
    assert first.fetch.outcome == "ok" and first.fetch.etag == '"v1"'
    assert first.polled["items"] == 1 and first.items[0]["title"] == "市政府新闻发布会"
    assert first.items[0]["published_at"] == "2026-04-20T09:30:00+08:00"
    second = await poll(session, "s1", f"{base}/conditional", "sh-gov", previous=first.fetch, at=AT)
    assert second.fetch.outcome == "not_modified" and second.fetch.http_status == 304
    assert second.polled["outcome"] == "not_modified" and second.items == []
    assert second.fetch.etag == '"v1"'
    assert second.fetch.last_modified == "Mon, 20 Apr 2026 01:30:00 GMT"
    assert state.conditional[0] == {"if-none-match": None, "if-modified-since": None}
    assert state.conditional[1] == {
        "if-none-match": '"v1"',
        "if-modified-since": "Mon, 20 Apr 2026 01:30:00 GMT",
    }


async def test_429_retry_after_seconds_is_honoured_by_next_poll(
    server: tuple[str, State], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    result = await fetch(session, "s1", f"{base}/429", at=AT)
    assert (result.outcome, result.http_status, result.retry_after) == ("http_error", 429, 120.0)
    assert parse_event(result.polled_event("sh-gov"))
    assert next_poll(30.0, 1, result.retry_after) == 120.0  # longer than the backoff (60)
    assert next_poll(300.0, 1, result.retry_after) == 600.0  # the backoff is longer


async def test_503_retry_after_http_date(
    server: tuple[str, State], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    result = await fetch(session, "s1", f"{base}/503", at=AT)
    assert (result.outcome, result.http_status) == ("http_error", 503)
    assert result.retry_after == 600.0
    assert next_poll(60.0, 1, result.retry_after) == 600.0


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (403, "blocked"),
        (412, "blocked"),
        (418, "blocked"),
        (404, "http_error"),
        (500, "http_error"),
    ],
)
async def test_status_classification(
    server: tuple[str, State], session: aiohttp.ClientSession, code: int, outcome: str
) -> None:
    base, _ = server
    result = await poll(session, "s1", f"{base}/status/{code}", "sh-gov", at=AT)
    assert (result.fetch.outcome, result.fetch.http_status) == (outcome, code)
    assert result.polled["outcome"] == outcome and result.polled["http_status"] == code
    parse_event(result.polled)


async def test_read_timeout(server: tuple[str, State], session: aiohttp.ClientSession) -> None:
    base, _ = server
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await fetch(session, "s1", f"{base}/sleepy", limits=FAST, at=AT)
    assert result.outcome == "timeout", result.detail
    assert loop.time() - started < 2.5


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_body_over_the_cap(
    server: tuple[str, State], session: aiohttp.ClientSession, path: str
) -> None:
    base, _ = server
    result = await fetch(session, "s1", base + path, limits=FAST, at=AT)
    assert result.outcome == "network_error" and result.body is None
    assert "over the cap" in (result.detail or "")


async def test_a_body_trickled_in_pieces_is_read_whole(
    server: tuple[str, State], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    result = await poll(session, "s1", f"{base}/trickle", "sh-gov", limits=FAST, at=AT)
    assert result.fetch.body == FEED
    assert result.polled["outcome"] == "ok" and len(result.items) == 1


async def test_slow_loris_is_cut_off_by_the_total_timeout(
    server: tuple[str, State], session: aiohttp.ClientSession
) -> None:
    base, _ = server
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await fetch(session, "s1", f"{base}/slow-loris", limits=FAST, at=AT)
    assert result.outcome == "timeout", result.detail
    assert loop.time() - started < 3.0


async def test_connection_refused_is_a_network_error(session: aiohttp.ClientSession) -> None:
    previous = FetchResult("s1", "x", AT, "ok", 200, etag='"v0"')
    result = await fetch(
        session, "s1", "http://127.0.0.1:9/feed", previous=previous, limits=FAST, at=AT
    )
    assert result.outcome == "network_error"
    assert result.etag == '"v0"'  # the validators survive a failure
    event = parse_event(result.polled_event("sh-gov"))
    assert event.type == "feed.polled"


# -- the pure parts ----------------------------------------------------------------------


def test_next_poll_backs_off_capped_and_never_gives_up() -> None:
    assert next_poll(300.0, 0) == 300.0
    assert [next_poll(300.0, n) for n in (1, 2, 3)] == [600.0, 1200.0, 2400.0]
    assert next_poll(300.0, 10) == 6 * 3600.0
    assert next_poll(300.0, 10_000) == 6 * 3600.0  # still polled, whatever the count
    assert next_poll(300.0, 1, jitter=1.0) == pytest.approx(660.0)
    assert next_poll(300.0, 0, retry_after=10**9) == 24 * 3600.0  # hostile Retry-After bounded
    with pytest.raises(ValueError):
        next_poll(0.0, 1)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", AT) == 120.0
    assert parse_retry_after(None, AT) is None
    assert parse_retry_after("soon", AT) is None
    past = format_datetime(AT.astimezone(UTC) - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, AT) == 0.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tue, 14 Apr 2026 00:00:00 +0000", ("2026-04-14", "day")),
        ("Tue, 14 Apr 2026 00:00:00 +0800", ("2026-04-14", "day")),
        ("Mon, 13 Apr 2026 16:00:00 GMT", ("2026-04-14", "day")),  # RSSHub's date-only
        ("2026-04-14", ("2026-04-14", "day")),
        ("2026-04-14 09:30", ("2026-04-14T09:30:00+08:00", "minute")),
        ("2026-04-14 09:30:15", ("2026-04-14T09:30:15+08:00", "second")),
        ("2026-04-14T09:30:15Z", ("2026-04-14T09:30:15+00:00", "second")),
        ("Tue, 14 Apr 2026 09:30 +0800", ("2026-04-14T09:30:00+08:00", "minute")),
        ("", (None, "none")),
        ("   ", (None, "none")),
        ("昨天", (None, "none")),
        (None, (None, "none")),
    ],
)
def test_read_date(raw: str | None, expected: tuple[str | None, str]) -> None:
    assert read_date(raw) == expected


def test_guids_broken_beyond_five_percent_fall_back_to_link_and_date() -> None:
    items = "".join(
        f"<item><guid>same</guid><title>t{i}</title><link>https://x.example/{i}</link>"
        f"<pubDate>Mon, 20 Apr 2026 09:{i:02d}:00 +0800</pubDate></item>"
        for i in range(20)
    )
    body = f'<rss version="2.0"><channel><title>c</title>{items}</channel></rss>'.encode()
    parsed = parse_feed(body, {}, source_id="s", unit="u", seen_at=AT)
    assert parsed.guid_fallback and len(parsed.items) == 20
    # An edited title with the same link and date keeps its key.
    edited = parse_feed(
        body.replace(b"<title>t3<", b"<title>t3 (edited)<"), {}, source_id="s", unit="u", seen_at=AT
    )
    assert [i["item_id"] for i in edited.items] == [i["item_id"] for i in parsed.items]
    # One empty guid in 20 (5 %) is within the tolerance: guids are kept, the link stands in.
    healthy = "".join(
        f"<item>{'' if i == 0 else f'<guid>g{i}</guid>'}<title>t{i}</title>"
        f"<link>https://x.example/{i}</link></item>"
        for i in range(20)
    )
    body = f'<rss version="2.0"><channel><title>c</title>{healthy}</channel></rss>'.encode()
    parsed = parse_feed(body, {}, source_id="s", unit="u", seen_at=AT)
    assert not parsed.guid_fallback
    assert parsed.items[0]["item_id"] == "https://x.example/0"
    assert parsed.items[1]["item_id"] == "g1"
    assert "published_at" not in parsed.items[0]
    assert parsed.items[0]["published_precision"] == "none"


def test_garbage_is_a_parse_error_with_a_reason() -> None:
    for body in (b"", b"<html><body>Access denied</body></html>", b"\x00\xff\xfe garbage"):
        parsed = parse_feed(
            body, {"Content-Type": "text/html"}, source_id="s", unit="u", seen_at=AT
        )
        assert parsed.outcome == "parse_error" and parsed.reason, body
