"""The acknowledgement page and its handlers: content, escaping, countdown vs overdue,
404/410 for bad links, the POST that acknowledges, and the JSON variant.

The obligation data is what ``GET /v1/obligations/{id}`` returns for the scripted incident of
tests/test_escalation.py (the real ledger), and the escalation summary is the real notifier's.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from typing import Any

from test_escalation import CAL, HOUR, MIN, POLICIES, ROSTER, RULES, T
from test_notifier import incident, run

from channels.console import ConsoleChannel
from deadlines.ledger import Ledger
from deadlines.report import obligation_view
from escalation.links import AckClaim, AckError, AckIndex, make_token
from escalation.memory import Notifier
from web.ack_html import CSP, countdown, render_ack_page, render_confirmation, render_error
from web.ack_page import AckHandlers, escalation_summary, wants_json

OB = "first_release_5h:I1"
SECRET = "s" * 32
CLAIM = AckClaim(OB, 1, "li", T + 3 * 86_400, "00000000")
TITLE = "重大突发事件 5 小时内首次权威发布 First authoritative release within 5 hours"


def obligation_at(now: int) -> dict[str, Any]:
    ledger = Ledger(RULES, CAL)
    ledger.tick(T)
    ledger.apply(incident())  # type: ignore[arg-type]
    while (due := ledger.next_due()) is not None and due <= now:  # every warning on time
        ledger.tick(due)
    ledger.tick(now)
    ob = ledger.get(OB)
    assert ob is not None
    return obligation_view(ob)


def visible_text(page: str) -> str:
    page = re.sub(r"<(style|script)>.*?</\1>", "", page, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_page_before_the_deadline_shows_the_countdown_and_the_button() -> None:
    now = T + 4 * HOUR + 30 * MIN  # due at T+5h
    page = render_ack_page(obligation_at(now), CLAIM, now, title=TITLE)
    text = visible_text(page)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<html lang="zh-CN">' in page
    assert TITLE in text and "I1" in text and "u1" in text
    assert "期限:北京时间 2026-03-10 15:00" in text
    assert "剩余 00:30:00" in text and 'class="countdown soon"' in page
    assert f'data-due="{T + 5 * HOUR}" data-now="{now}"' in page
    assert (
        '<form method="post"><button type="submit" id="ack-button">确认收到 / Acknowledge' in page
    )
    assert "第 1 级通知 · 接收人 li" in text
    # the timeline, in Beijing time: opened at 10:00, warned at 12:30 and 14:00
    timeline = text[text.index("时间线") :]
    assert "2026-03-10 10:00 开始计时" in timeline
    assert "2026-03-10 12:30 到期预警" in timeline and "2026-03-10 14:00 到期预警" in timeline
    assert "链接有效期至 2026-03-13 10:00" in text


def test_page_after_the_deadline_shows_how_long_it_is_overdue() -> None:
    now = T + 6 * HOUR + 2 * MIN + 3
    page = render_ack_page(obligation_at(now), CLAIM, now)
    text = visible_text(page)
    assert "已超时 01:02:03" in text and 'class="countdown overdue"' in page
    assert "已超时未完成" in text  # status: missed
    assert "超过时限" in text  # the breached entry of the timeline
    assert "first_release_5h" in text  # no title given: the rule id


def test_countdown_edges() -> None:
    assert countdown(1000, 1000) == ("剩余", "00:00:00", "soon")  # the deadline second is in time
    assert countdown(1000, 1001) == ("已超时", "00:00:01", "overdue")
    assert countdown(3 * 86_400 + 7200, 0) == ("剩余", "3天 02:00:00", "running")
    assert countdown(0, 86_400 + 61) == ("已超时", "1天 00:01:01", "overdue")


def test_fulfilled_paused_and_missing_obligations() -> None:
    ob = obligation_at(T + HOUR)
    met = {**ob, "status": "met", "fulfilled_at": "2026-03-10T13:20:00+08:00"}
    text = visible_text(render_ack_page(met, CLAIM, T + 6 * HOUR))
    assert "按时完成 2026-03-10 13:20" in text and "已超时" not in text
    paused = {**ob, "status": "paused"}
    page = render_ack_page(paused, CLAIM, T + 6 * HOUR)
    assert "计时暂停" in visible_text(page) and 'id="countdown"' not in page
    page = render_ack_page(None, CLAIM, T)
    assert "详情暂不可用" in page and 'id="ack-button"' in page and OB in page


def test_every_user_string_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    ob = {
        **obligation_at(T + HOUR),
        "subject_id": evil,
        "unit": 'u1" onmouseover="x',
        "timeline": [
            {
                "at": "2026-03-10T10:00:00+08:00",
                "kind": "<b>opened</b>",
                "event_id": "<img src=x onerror=alert(1)>",
                "detail": "a & b",
            }
        ],
    }
    claim = AckClaim("r:<i>", 1, "li<svg onload=x>", T + HOUR, "0")
    escalation = {"stage": "<x>", "acks": [{"level": 1, "person_id": "</li><p>", "at": T}]}
    page = render_ack_page(ob, claim, T, title="标题 <u>", escalation=escalation)
    for raw in (evil, "<img", "<svg", "<b>", "<u>", "<x>", 'u1" onmouseover', "</li><p>"):
        assert raw not in page, raw
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "u1&quot; onmouseover=&quot;x" in page
    page = render_confirmation(claim, T, ob, title="<u>")
    assert "<svg" not in page and "<u>" not in page and "&lt;svg" in page


def test_no_external_assets_and_the_csp_allows_exactly_the_inline_code() -> None:
    page = render_ack_page(obligation_at(T + HOUR), CLAIM, T + HOUR)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<link" not in page
    for tag in ("style", "script"):
        (code,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in CSP
    assert "default-src 'none'" in CSP and "form-action 'self'" in CSP


def test_escalation_summary_and_the_already_acknowledged_note() -> None:
    console = ConsoleChannel(io.StringIO())
    n = Notifier(POLICIES, ROSTER, {"sms": console}, ack_url=lambda _: "https://x/a/t")
    run(n, T + 5 * HOUR + 31 * MIN)  # breached at 15:00, repeated at 15:30
    n.acknowledge(OB, 1, "li", T + 5 * HOUR + 40 * MIN)
    summary = escalation_summary(n.states[OB])
    assert summary["stage"] == "acknowledged" and summary["level"] == 1
    assert summary["acks"] == [
        {"level": 1, "person_id": "li", "at": "2026-03-10T15:40:00+08:00", "current": True}
    ]
    assert "+86" not in json.dumps(summary)  # no phone numbers
    kinds = [m["kind"] for m in summary["messages"]]
    assert kinds == ["warned", "warned", "breached", "breached", "repeat", "repeat"]
    now = T + 5 * HOUR + 41 * MIN
    text = visible_text(render_ack_page(obligation_at(now), CLAIM, now, escalation=summary))
    assert "已有人确认,停止催办" in text and "当前级别 第 1 级" in text
    assert "您已于 2026-03-10 15:40 确认收到" in text
    assert "重复催办 · 第 1 级 · li · 短信 · 待回执" in text


def test_error_pages() -> None:
    text = visible_text(render_error(AckError("expired", "60 s ago")))
    assert "确认链接已过期" in text and "This acknowledgement link has expired." in text
    assert "60 s ago" not in text
    assert "找不到此确认链接" in visible_text(render_error(AckError("unknown")))


def test_accept_negotiation() -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert not wants_json(browser) and not wants_json(None) and not wants_json("*/*")
    assert wants_json("application/json")
    assert wants_json("application/json, text/html;q=0.5")
    assert not wants_json("application/json;q=0.5, text/html")


# ---------------------------------------------------------------------------------------
# Handlers


class Recorder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, int, str, int]] = []
        self.fail = fail

    async def __call__(self, obligation_id: str, level: int, person: str, at: int) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append((obligation_id, level, person, at))


def handlers(acknowledge: Recorder, **kw: Any) -> tuple[AckHandlers, str]:
    index = AckIndex()
    index.add(OB, "li")

    async def load(obligation_id: str) -> dict[str, Any] | None:
        return obligation_at(T + 6 * HOUR) if obligation_id == OB else None

    args: dict[str, Any] = {"load_obligation": load, "title_for": lambda rule: TITLE}
    args.update(kw)
    token = make_token(OB, 1, "li", T + 3 * 86_400, SECRET)
    return AckHandlers([SECRET], index, acknowledge, **args), token


async def test_get_shows_the_page_and_never_acknowledges() -> None:
    ack = Recorder()
    h, token = handlers(ack)
    r = await h.get(token, now=T + 6 * HOUR)
    assert r.status == 200 and r.content_type == "text/html"
    assert r.headers["Cache-Control"] == "no-store" and "Content-Security-Policy" in r.headers
    assert TITLE in r.text and "已超时 01:00:00" in visible_text(r.text)
    assert ack.calls == []


async def test_post_acknowledges_and_confirms() -> None:
    ack = Recorder()
    h, token = handlers(ack)
    r = await h.post(token, now=T + 6 * HOUR + 5)
    assert r.status == 200 and "已确认收到 / Acknowledged" in r.text
    assert ack.calls == [(OB, 1, "li", T + 6 * HOUR + 5)]
    assert "第 1 级 · li · 北京时间 2026-03-10 16:00" in visible_text(r.text)


async def test_bad_and_expired_links_get_404_and_410_and_no_ack() -> None:
    ack = Recorder()
    h, token = handlers(ack)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for method in (h.get, h.post):
        r = await method(tampered, now=T)
        assert r.status == 404 and "确认链接签名不符" in r.text
        r = await method("nonsense", now=T)
        assert r.status == 404 and "这不是有效的确认链接" in r.text
        r = await method(token, now=T + 3 * 86_400)
        assert r.status == 410 and "确认链接已过期" in r.text
    assert ack.calls == []


async def test_json_variant() -> None:
    ack = Recorder()
    h, token = handlers(ack)
    r = await h.get(token, now=T + HOUR, accept="application/json")
    data = json.loads(r.body)
    assert r.content_type == "application/json"
    assert (data["obligation_id"], data["level"], data["person_id"]) == (OB, 1, "li")
    assert data["expires_at"] == "2026-03-13T10:00:00+08:00"
    assert data["obligation"]["status"] == "missed" and data["acknowledge"] == {"method": "POST"}
    r = await h.post(token, now=T + HOUR, accept="application/json")
    assert json.loads(r.body) == {
        "acknowledged": True,
        "obligation_id": OB,
        "level": 1,
        "person_id": "li",
        "expires_at": "2026-03-13T10:00:00+08:00",
        "at": "2026-03-10T11:00:00+08:00",
    }
    r = await h.get(token, now=T + 4 * 86_400, accept="application/json")
    assert r.status == 410 and json.loads(r.body)["error"] == "expired"


async def test_nothing_to_acknowledge_and_failing_loaders() -> None:
    h, token = handlers(Recorder(fail=KeyError(OB)))
    r = await h.post(token, now=T)
    assert r.status == 404 and "无需确认" in r.text
    h, token = handlers(Recorder(fail=TimeoutError()))
    r = await h.post(token, now=T)
    assert r.status == 503 and r.headers["Retry-After"] == "30" and "稍后重试" in r.text
    r = await h.post(token, now=T, accept="application/json")
    assert r.status == 503 and json.loads(r.body)["error"] == "unavailable"

    async def broken(obligation_id: str) -> dict[str, Any] | None:
        raise ConnectionError("owner worker down")

    ack = Recorder()
    h, token = handlers(ack, load_obligation=broken, load_escalation=broken)
    r = await h.get(token, now=T)
    assert r.status == 200 and "详情暂不可用" in r.text and 'id="ack-button"' in r.text
    assert (await h.post(token, now=T)).status == 200 and len(ack.calls) == 1
