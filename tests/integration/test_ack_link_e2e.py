"""The acknowledgement link end to end, against the real worker.

``govclock run`` (the embedded broker, the notifier with the roster and drill policy of
tests/integration/test_escalation.py, the real twilio SDK against the local fake Twilio). An
incident breaches 2 s after it is reported; li's breach SMS, as the fake Twilio received it,
carries the signed link ``<public url>/a/<token>``. Headless Debian Chromium (the flags and
phone viewport of tests/integration/test_ack_browser.py) opens it: the page served by the
worker's own ``GET /a/{token}`` shows the obligation and its deadline; opening it changes
nothing; tapping "确认收到" POSTs, the confirmation comes back, the escalation is
``acknowledged`` (``GET /v1/obligations/{id}/escalation``) and no repeat follows within two
and a half repeat intervals. A tampered link gets the error page. No ``GOVCLOCK_ACK_SECRET``
is set: the worker generates one into its data directory (mode 0600).
"""

from __future__ import annotations

import http.client
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from escalation.links import ACK_PATH, TOKEN_CHARS, sms_segments, token_partition
from streams.broker import EmbeddedBroker
from streams.topics import escalation_partition, subject_key
from tests.fake_twilio import FakeTwilio
from tests.integration.test_ack_browser import PHONE, chromium_path, phone_context
from tests.integration.test_escalation import (  # noqa: F401 (fixtures)
    LI,
    REPEAT_S,
    UNIT,
    TwilioMonitor,
    escalation,
    fake,
    monitor,
    notifier_env,
    page_recorded,
    repeat_no,
    sms,
)
from tests.integration.test_monitor import (
    SHANGHAI,
    TANSU_AS_CLUSTER,
    epoch,
    incident,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "e2e-ack-secret-for-two-workers-0123456789"

LINK = re.compile(rf"确认(http://127\.0\.0\.1:\d+{ACK_PATH}[A-Za-z0-9_-]{{{TOKEN_CHARS}}})$")


def get(url: str, accept: str | None = None, method: str = "GET") -> tuple[int, str, str]:
    """``(status, content type, body)`` of one request to the monitor."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)
    try:
        conn.request(method, parts.path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def link_of(message: dict[str, Any]) -> str:
    m = LINK.search(message["body"])
    assert m, message["body"]
    return m.group(1)


@pytest.mark.timeout(150)
def test_sms_link_opened_in_chromium_acknowledges_and_stops_the_repeats(
    monitor: TwilioMonitor,  # noqa: F811
    fake: FakeTwilio,  # noqa: F811
    tmp_path: Path,
) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    mon = monitor.start()
    mon.wait_ready()
    t_ready = time.monotonic()
    now = int(time.time())
    iid = f"I-LINK-{now}"
    oid = f"first_release_5h:{iid}"
    status, body = mon.post([{**incident("link-1", iid, now + 2 - 5 * 3600), "unit": UNIT}])
    assert status == 202, body

    # the breach pages; li's carries li's link, naming the obligation's escalation partition
    page_li = wait_for(
        "li's breach SMS",
        lambda: [m for m in sms(fake) if m["to"] == LI and repeat_no(m["body"]) == 1],
        20,
    )[0]
    t_sms = time.monotonic()
    text = page_li["body"]
    link = link_of(page_li)
    assert link.startswith(f"http://127.0.0.1:{mon.port}{ACK_PATH}")
    token = link.rsplit("/", 1)[1]
    assert token_partition(token) == escalation_partition(oid, 2)
    segments = sms_segments(text)
    assert segments == 2, (len(text), text)
    links = {link_of(m) for m in sms(fake)}
    assert len(links) == len(sms(fake))  # every message a link of its own (person, rung)

    # the secret was generated into the data directory, readable by its owner only
    secret_file = mon.data_dir / "ack-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    log_text = mon.log_path.read_text(errors="replace")
    assert "generated a secret for acknowledgement links" in log_text
    assert (
        f"acknowledgement links http://127.0.0.1:{mon.port}/a/… valid 72 h "
        f"(the secret in {secret_file})" in log_text
    )
    assert secret_file.read_text().strip() not in log_text

    # JSON for a client that asks for it; opening the link acknowledges nothing
    status, ctype, raw = get(link, accept="application/json")
    assert status == 200 and ctype.startswith("application/json"), (status, raw)
    data = json.loads(raw)
    assert (data["obligation_id"], data["level"], data["person_id"]) == (oid, 1, "li")
    assert data["obligation"]["id"] == oid and data["obligation"]["status"] == "missed"
    assert data["escalation"]["stage"] == "breached"
    due_cst = datetime.fromtimestamp(epoch(data["obligation"]["due_at"]), SHANGHAI)
    assert escalation(mon, oid)["stage"] == "breached"

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            **phone_context(tmp_path / "profile", executable)
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            response = page.goto(link)
            assert response is not None and response.status == 200
            assert page.title() == "确认收到 · 政务时限"
            shown = page.locator("#obligation").inner_text()
            assert "首次权威发布" in shown and iid in shown and "已超时未完成" in shown, shown
            deadline = page.locator("#deadline").inner_text()
            assert "已超时" in deadline and due_cst.strftime("%Y-%m-%d %H:%M") in deadline
            assert "已超时,催办中" in page.locator("#escalation").inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert escalation(mon, oid)["stage"] == "breached"  # GET never acknowledges
            page.screenshot(path=str(tmp_path / "e2e-ack-page.png"), full_page=True)

            button = page.locator("#ack-button")
            t_tap = time.monotonic()
            with page.expect_navigation():
                button.tap()
            confirmed = page.locator("#confirmed").inner_text()
            t_confirmed = time.monotonic()
            assert "已确认收到 / Acknowledged" in confirmed and "li" in confirmed, confirmed

            acked = wait_for(
                "the ack applied",
                lambda: (e := escalation(mon, oid))["stage"] == "acknowledged" and e,
                10,
            )
            t_acked = time.monotonic()
            assert acked["next_wake"] is None
            assert [(a["level"], a["person"]) for a in acked["acks"]] == [(1, "li")]
            count = len(sms(fake))
            time.sleep(2.5 * REPEAT_S)
            assert len(sms(fake)) == count, [m["body"] for m in sms(fake)[count:]]

            page.goto(link)  # the page now says so
            assert "您已于" in page.locator("#already").inner_text()
            assert "已有人确认" in page.locator("#escalation").inner_text()

            tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
            response = page.goto(tampered)
            assert response is not None and response.status == 404
            error = page.locator("#error").inner_text()
            assert "确认链接签名不符" in error or "找不到此确认链接" in error
            assert page.locator("#ack-button").count() == 0
        finally:
            context.close()

    assert get(tampered, method="POST")[0] == 404  # nothing acknowledged by a bad link
    status, _, raw = get(link[:-1], accept="application/json")
    assert status == 404 and json.loads(raw)["error"] == "malformed"
    log_text = mon.log_path.read_text(errors="replace")
    assert re.search(rf"{re.escape(oid)} acknowledged at level 1 by li \(link\)", log_text)
    assert LI not in log_text and LI[3:] not in log_text
    print(
        f"\nack link: SMS {len(text)} chars ({segments} UCS-2 segments), link {len(link)} "
        f"chars; ready {t_ready - t0:.1f} s, breach SMS after {t_sms - t_ready:.1f} s, "
        f"tap→confirmation {t_confirmed - t_tap:.2f} s, →acknowledged "
        f"{t_acked - t_tap:.2f} s; whole test {time.monotonic() - t0:.1f} s\n  {text}"
    )


# -- two workers: a link opened on the worker that does not hold its escalation ---------------


@pytest.mark.timeout(180)
def test_a_link_opened_on_another_worker_is_forwarded_to_the_owner(
    tmp_path: Path,
    fake: FakeTwilio,  # noqa: F811
) -> None:
    """Two workers on one (Tansu-as-cluster) broker, four partitions. The incident is chosen
    so that its subject (the ledger, the obligation) is on one worker and its escalation (the
    notifier, the link's ref) on the other; the link is opened on the first: it forwards to
    the owner, which loads the obligation back from the first. Without GOVCLOCK_ACK_SECRET a
    worker on a cluster refuses to start."""
    notifier = notifier_env(tmp_path, fake)
    with EmbeddedBroker(tmp_path / "cluster", start_timeout=10.0) as cluster:
        env = {
            "KAFKA_BROKER": cluster.bootstrap,
            "GOVCLOCK_PARTITIONS": "4",
            **notifier,
            **TANSU_AS_CLUSTER,
        }
        refused = TwilioMonitor(tmp_path / "r" / "var", tmp_path / "r", env, name="no-secret")
        workers = [
            TwilioMonitor(
                tmp_path / n / "var", tmp_path / n, {**env, "GOVCLOCK_ACK_SECRET": SECRET}, name=n
            )
            for n in ("worker-a", "worker-b")
        ]
        try:
            refused.start()
            assert refused.proc is not None and refused.proc.wait(60) == 2
            said = refused.log_path.read_text(errors="replace")
            assert "GOVCLOCK_ACK_SECRET: required with KAFKA_BROKER" in said, said[-2000:]
            _forwarding(workers, fake)
        finally:
            for w in reversed(workers):
                w.cleanup()
            refused.cleanup()


def _forwarding(workers: list[TwilioMonitor], fake: FakeTwilio) -> None:  # noqa: F811
    t0 = time.monotonic()
    for w in workers:
        w.start()

    def split() -> dict[int, TwilioMonitor] | None:
        owners: dict[int, TwilioMonitor] = {}
        for w in workers:
            if not w.alive():
                pytest.fail(f"a worker died: {w.describe()}")
            status, ready = w.readyz()
            if status != 200 or not ready["partitions"]:
                return None
            owners.update(dict.fromkeys(ready["partitions"], w))
        return owners if sorted(owners) == [0, 1, 2, 3] else None

    owners = wait_for("both workers ready with the partitions split", split, 90)
    t_split = time.monotonic()
    now = int(time.time())
    # the subject on one worker, the escalation on the other
    iid = next(
        f"I-FWD-{now}-{i}"
        for i in range(1000)
        if owners[escalation_partition(subject_key("incident_id", f"I-FWD-{now}-{i}"), 4)]
        is not owners[escalation_partition(f"first_release_5h:I-FWD-{now}-{i}", 4)]
    )
    oid = f"first_release_5h:{iid}"
    ledger_worker = owners[escalation_partition(subject_key("incident_id", iid), 4)]
    notifier_worker = owners[escalation_partition(oid, 4)]
    status, body = ledger_worker.post(
        [{**incident("fwd-1", iid, now + 2 - 5 * 3600), "unit": UNIT}]
    )
    assert status == 202, body
    page_li = wait_for(
        "li's breach SMS",
        lambda: [m for m in sms(fake) if m["to"] == LI and iid in m["body"]],
        30,
    )[0]
    link = link_of(page_li)
    # made by the notifier that owns the escalation (its own public URL)
    assert link.startswith(f"http://127.0.0.1:{notifier_worker.port}{ACK_PATH}")
    path = urlsplit(link).path
    elsewhere = f"http://127.0.0.1:{ledger_worker.port}{path}"

    def same_view() -> list[Any] | None:
        """Both workers' answers, once they agree: the owner answers one directly and the
        other forwarded, but a delivery report may change a message between the two reads
        (CI once saw a message's status move in between)."""
        answers = [
            get(f"http://127.0.0.1:{w.port}{path}", accept="application/json") for w in workers
        ]
        assert [a[0] for a in answers] == [200, 200], answers
        datas = [json.loads(a[2]) for a in answers]
        return datas if datas[0] == datas[1] else None

    datas = wait_for("the same page data from both workers", same_view, 10)
    assert (datas[0]["obligation_id"], datas[0]["person_id"]) == (oid, "li")
    assert datas[0]["obligation"]["id"] == oid  # loaded from the ledger's worker
    assert datas[0]["escalation"]["stage"] == "breached"

    status, ctype, page = get(elsewhere)
    assert status == 200 and ctype.startswith("text/html"), (status, page[:500])
    assert "首次权威发布" in page and iid in page and 'id="ack-button"' in page
    t_post = time.monotonic()
    status, _, confirmed = get(elsewhere, method="POST")
    assert status == 200 and "已确认收到 / Acknowledged" in confirmed, confirmed[:500]
    acked = wait_for(
        "the ack applied on the owner",
        lambda: (e := escalation(ledger_worker, oid))["stage"] == "acknowledged" and e,
        10,
    )
    assert [(a["level"], a["person"]) for a in acked["acks"]] == [(1, "li")]
    tampered = elsewhere[:-3] + ("AAA" if not elsewhere.endswith("AAA") else "BBB")
    assert get(tampered)[0] == 404
    t_acked = time.monotonic()

    # An SMS reply reaching the worker that does not hold the escalation: it asks the other
    # worker for li's unacknowledged pages and acknowledges the latest (docs/twilio.md).
    iid2 = next(
        f"I-SMS-{now}-{i}" for i in range(1000)
        if owners[escalation_partition(f"first_release_5h:I-SMS-{now}-{i}", 4)] is ledger_worker
    )  # fmt: skip
    oid2 = f"first_release_5h:{iid2}"
    status, body = notifier_worker.post(
        [{**incident("sms-2", iid2, now + 2 - 5 * 3600), "unit": UNIT}]
    )
    assert status == 202, body
    wait_for("li's second breach SMS", lambda: [m for m in sms(fake) if iid2 in m["body"]], 30)
    wait_for("the page recorded as sent", lambda: page_recorded(ledger_worker, oid2, "li"), 10)
    t_reply = time.monotonic()
    status, _, twiml = sms_reply(notifier_worker, fake.auth_token, LI, "确认")
    answered = time.monotonic() - t_reply
    assert status == 200 and "已确认:首次权威发布·" in twiml and "(1级)" in twiml, twiml
    acked2 = wait_for(
        "the SMS ack applied on the other worker",
        lambda: (e := escalation(notifier_worker, oid2))["stage"] == "acknowledged" and e,
        10,
    )
    assert [(a["level"], a["person"]) for a in acked2["acks"]] == [(1, "li")]
    assert escalation(ledger_worker, oid)["acks"] == acked["acks"]  # the first one untouched
    print(
        f"\nforwarded ack link: split after {t_split - t0:.1f} s; POST on the other worker → "
        f"acknowledged {t_acked - t_post:.2f} s; SMS reply on the other worker answered in "
        f"{answered:.2f} s; whole {time.monotonic() - t0:.1f} s"
    )


def sms_reply(mon: TwilioMonitor, auth_token: str, sender: str, body: str) -> tuple[int, str, str]:
    """Twilio's incoming-message webhook, signed with the SDK's RequestValidator."""
    from urllib.parse import urlencode

    from twilio.request_validator import RequestValidator

    from channels.twilio_sms import INBOUND_PATH

    form = {"MessageSid": f"SM{time.time_ns():032x}", "From": sender, "To": "+15005550006"}
    form["Body"] = body
    url = f"http://127.0.0.1:{mon.port}{INBOUND_PATH}"
    signature = RequestValidator(auth_token).compute_signature(url, form)
    conn = http.client.HTTPConnection("127.0.0.1", mon.port, timeout=15)
    try:
        conn.request(
            "POST",
            INBOUND_PATH,
            body=urlencode(form).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()
