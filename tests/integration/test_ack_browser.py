"""The acknowledgement page in a real browser: headless Debian Chromium at a phone's size.

A real aiohttp server on 127.0.0.1 serves ``GET``/``POST /a/{token}`` through
``web.ack_page.AckHandlers`` (the same functions the worker's ``/a/{token}`` view calls;
tests/integration/test_ack_link_e2e.py opens links against the real worker). The
links come from real messages: the scripted incident of tests/test_escalation.py runs through
the real ledger and notifier (console channel) with ``make_ack_url``. The browser opens the
breach SMS's link, sees the obligation, the overdue countdown ticking and the timeline, taps
"确认收到", gets the confirmation, and the notifier stops repeating. A tampered link shows the
error page.

Chromium is Debian's (``make tools`` installs ``chromium``); playwright (a dev dependency)
drives it through ``executable_path``: nothing is downloaded. Without /usr/bin/chromium this
test fails, telling you to run ``make tools``: CI must run it.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from test_escalation import CAL, HOUR, MIN, POLICIES, ROSTER, RULES, T
from test_notifier import incident, run

from channels.console import ConsoleChannel
from deadlines.ledger import Ledger
from deadlines.report import obligation_view
from escalation.links import ACK_PATH, AckIndex, make_ack_url
from escalation.memory import Notifier
from web.ack_page import AckHandlers, AckResponse, escalation_summary

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
#: Headless, and quiet: this machine has no internet, and without the networking flags
#: Chromium keeps trying (updates, sync, safe browsing) and floods refused connections.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 390, "height": 844}  # a common phone's CSS viewport


def phone_context(profile: Path, executable: str) -> dict[str, Any]:
    """Options of a persistent Chromium context that looks like a phone in Shanghai (a fresh
    user-data-dir at ``profile``)."""
    return {
        "user_data_dir": str(profile),
        "executable_path": executable,
        "headless": True,
        "args": CHROMIUM_FLAGS,
        "viewport": PHONE,
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
        "locale": "zh-CN",
        "timezone_id": "Asia/Shanghai",
    }


SECRET = "browser-test-secret-0123456789abcdef"
OB = "first_release_5h:I1"
NOW = T + 5 * HOUR + 40 * MIN  # 40 minutes past the 15:00 deadline; li paged at 15:00, 15:30
TITLE = "突发事件 5 小时内首次权威发布"


def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `make tools` (installs Debian's chromium package); "
            "CI must run this test"
        )
    return CHROMIUM


def obligation_json(now: int) -> dict[str, Any]:
    ledger = Ledger(RULES, CAL)
    ledger.tick(T)
    ledger.apply(incident())  # type: ignore[arg-type]
    while (due := ledger.next_due()) is not None and due <= now:
        ledger.tick(due)
    ob = ledger.get(OB)
    assert ob is not None
    return {**obligation_view(ob), "unit_name": "某区应急管理局"}


class Site:
    """The notifier, its links, and a web server answering /a/{token} through AckHandlers."""

    def __init__(self) -> None:
        self.console = ConsoleChannel(io.StringIO())
        self.index = AckIndex()
        self.acks: list[tuple[str, int, str, int]] = []
        self.now = NOW
        self.notifier: Notifier | None = None
        self.base = ""

    async def acknowledge(self, obligation_id: str, level: int, person: str, at: int) -> None:
        self.acks.append((obligation_id, level, person, at))
        assert self.notifier is not None
        self.notifier.acknowledge(obligation_id, level, person, at)

    async def load_obligation(self, obligation_id: str) -> dict[str, Any] | None:
        return obligation_json(self.now) if obligation_id == OB else None

    async def load_escalation(self, obligation_id: str) -> dict[str, Any] | None:
        assert self.notifier is not None
        state = self.notifier.states.get(obligation_id)
        return None if state is None else escalation_summary(state)

    def handlers(self) -> AckHandlers:
        return AckHandlers(
            SECRET,
            self.index,
            self.acknowledge,
            load_obligation=self.load_obligation,
            load_escalation=self.load_escalation,
            title_for=lambda rule_id: TITLE,
        )


def respond(r: AckResponse) -> web.Response:
    return web.Response(
        status=r.status, body=r.body, content_type=r.content_type, charset="utf-8",
        headers=dict(r.headers),
    )  # fmt: skip


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    handlers = s.handlers()

    async def get(request: web.Request) -> web.Response:
        accept = request.headers.get("Accept")
        return respond(await handlers.get(request.match_info["token"], now=s.now, accept=accept))

    async def post(request: web.Request) -> web.Response:
        await request.read()
        accept = request.headers.get("Accept")
        return respond(await handlers.post(request.match_info["token"], now=s.now, accept=accept))

    app = web.Application()
    app.router.add_get(ACK_PATH + "{token}", get)
    app.router.add_post(ACK_PATH + "{token}", post)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    host, port = runner.addresses[0][:2]
    s.base = f"http://{host}:{port}"
    s.notifier = Notifier(
        POLICIES,
        ROSTER,
        {"sms": s.console},
        ack_url=make_ack_url(s.base, SECRET, index=s.index),
    )
    run(s.notifier, NOW)  # warnings 12:30, 14:00; breach 15:00 (li, eo-b); repeat 15:30
    try:
        yield s
    finally:
        await runner.cleanup()


def link_in(text: str) -> str:
    return text[text.index("http://") :]


async def test_acknowledge_in_headless_chromium_at_a_phone_viewport(
    site: Site, tmp_path: Path
) -> None:
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover
        pytest.fail("playwright is missing: `.venv/bin/pip install -e '.[dev]'` (make install)")
    breach = next(r for r in site.console.sent if "请立即处置" in r.text and r.to.endswith("9000"))
    link = link_in(breach.text)  # li's breach SMS (u1 level 1)
    sent_before = len(site.console.sent)

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            **phone_context(tmp_path / "profile", executable)
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            response = await page.goto(link)
            assert response is not None and response.status == 200
            assert await page.title() == "确认收到 · 政务时限"

            # The obligation, the deadline, the overdue time, the timeline: all visible.
            for selector in ("#obligation", "#deadline", "#ack", "#escalation", "#timeline"):
                assert await page.locator(selector).is_visible(), selector
            obligation = await page.locator("#obligation").inner_text()
            assert TITLE in obligation and "I1" in obligation and "某区应急管理局" in obligation
            assert "已超时未完成" in obligation
            deadline = await page.locator("#deadline").inner_text()
            assert "已超时" in deadline and "2026-03-10 15:00" in deadline
            timeline = await page.locator("#timeline").inner_text()
            for line in (
                "10:00\n开始计时",
                "12:30\n到期预警",
                "14:00\n到期预警",
                "15:00\n超过时限",
            ):
                assert line.replace("\n", "") in timeline.replace("\n", ""), line
            escalation = await page.locator("#escalation").inner_text()
            assert "已超时,催办中" in escalation and "重复催办" in escalation

            # The countdown runs (inline script, allowed by the page's CSP hash).
            first = await page.locator("#countdown .cd-time").inner_text()
            assert first == "00:40:00"
            for _ in range(50):  # polled from here: the page's CSP forbids eval
                await asyncio.sleep(0.1)
                if await page.locator("#countdown .cd-time").inner_text() != first:
                    break
            else:
                pytest.fail("the countdown did not move in 5 s")

            # Fits the phone: no sideways scrolling, the button fully on screen and tappable.
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"]
            button = page.locator("#ack-button")
            assert await button.is_visible() and await button.inner_text() == (
                "确认收到 / Acknowledge"
            )
            box = await button.bounding_box()
            assert box is not None and box["height"] >= 44 and box["width"] >= 300
            await page.screenshot(path=str(tmp_path / "ack-page.png"), full_page=True)

            # Tap: the form posts to the same URL; the confirmation page comes back.
            site.now = NOW + 2 * MIN
            async with page.expect_navigation():
                await button.tap()
            confirmed = page.locator("#confirmed")
            assert await confirmed.is_visible()
            text = await confirmed.inner_text()
            assert "已确认收到 / Acknowledged" in text and "li" in text and "15:42" in text
            assert site.acks == [(OB, 1, "li", NOW + 2 * MIN)]
            await page.screenshot(path=str(tmp_path / "ack-confirmed.png"), full_page=True)

            # Back to the page: the ack is shown; the notifier repeats no more.
            await page.goto(link)
            assert "您已于" in await page.locator("#already").inner_text()
            assert "已有人确认" in await page.locator("#escalation").inner_text()
            assert site.notifier is not None
            site.notifier.tick(NOW + 3 * HOUR)
            assert len(site.console.sent) == sent_before

            # A tampered link: the error page, nothing acknowledged.
            token = link.rsplit("/", 1)[1]
            tampered = link[: -len(token)] + token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
            response = await page.goto(tampered)
            assert response is not None and response.status == 404
            error = await page.locator("#error").inner_text()
            assert "确认链接签名不符" in error or "找不到此确认链接" in error
            assert await page.locator("#ack-button").count() == 0

            # And an expired one.
            site.now = NOW + 4 * 86_400
            response = await page.goto(link)
            assert response is not None and response.status == 410
            assert "确认链接已过期" in await page.locator("#error").inner_text()
            assert len(site.acks) == 1
        finally:
            await asyncio.wait_for(context.close(), timeout=30)


def test_a_missing_chromium_fails_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", str(tmp_path / "chromium"))
    with pytest.raises(pytest.fail.Exception, match="run `make tools`"):
        chromium_path()
