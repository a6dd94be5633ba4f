"""Acknowledging by SMS reply, against the real worker.

``govclock run`` (the embedded broker, the roster and drill policy of
tests/integration/test_escalation.py, the real twilio SDK against the local fake Twilio), with
the duty officer li on a Hong Kong number (two-way SMS works there; +86 numbers cannot reply).
An incident breaches 2 s after it is reported; li and the emergency office are paged and the
page repeats every 3 s. Then Twilio's incoming-message webhook is played the way Twilio sends
it: form-encoded, signed with the twilio SDK's own ``RequestValidator`` over
``GOVCLOCK_PUBLIC_URL`` + ``/v1/channels/twilio/inbound``:

* a bad or missing signature: 403, nothing happens;
* a reply from a number that is not in the roster: a neutral TwiML answer, nothing
  acknowledged, the number not in the log;
* li's "好的": a hint, nothing acknowledged;
* li's "确认": TwiML confirming what was acknowledged; the escalation becomes
  ``acknowledged`` (via ``sms``) and the repeats stop; the same MessageSid again gets the same
  answer; another "确认" finds nothing left to acknowledge.
"""

from __future__ import annotations

import http.client
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode
from xml.etree import ElementTree

import pytest
from twilio.request_validator import RequestValidator

from channels.twilio_sms import INBOUND_PATH
from escalation.replies import REPLY_HELP, REPLY_NOTHING, REPLY_UNKNOWN_NUMBER
from metrics.collectors import SMS_REPLY_OUTCOMES
from tests.fake_twilio import FakeTwilio
from tests.integration.test_escalation import (  # noqa: F401 (fixture)
    EO,
    LI,
    REPEAT_S,
    TWILIO_FROM,
    UNIT,
    TwilioMonitor,
    escalation,
    fake,
    notifier_env,
    page_recorded,
    repeat_no,
    roster_yaml,
    sms,
)
from tests.integration.test_monitor import incident, request, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LI_HK = "+85291234567"  # li's number here: Hong Kong, where two-way SMS works
STRANGER = "+14155550199"


@pytest.fixture
def hk_monitor(tmp_path: Path, fake: FakeTwilio) -> Iterator[TwilioMonitor]:  # noqa: F811
    roster = roster_yaml().replace(LI, LI_HK)
    env = {**notifier_env(tmp_path, fake, roster), "GOVCLOCK_PARTITIONS": "2"}
    mon = TwilioMonitor(tmp_path / "var", tmp_path, env, name="sms-reply")
    try:
        yield mon
    finally:
        mon.cleanup()


def reply(
    mon: TwilioMonitor,
    auth_token: str,
    sender: str,
    body: str,
    *,
    sid: str | None = None,
    signature: str | None = "sign",
) -> tuple[int, str, str]:
    """Twilio's incoming-message webhook for an SMS from ``sender`` to the Twilio number:
    ``(status, content type, body)``. ``signature``: "sign" signs it with the SDK's
    RequestValidator over the monitor's public URL; anything else is sent as the header."""
    form = {
        "ToCountry": "US",
        "SmsMessageSid": sid or f"SM{uuid.uuid4().hex}",
        "NumMedia": "0",
        "From": sender,
        "To": TWILIO_FROM,
        "Body": body,
        "NumSegments": "1",
        "MessageSid": sid or f"SM{uuid.uuid4().hex}",
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
    }
    form["SmsMessageSid"] = form["MessageSid"]
    url = f"http://127.0.0.1:{mon.port}{INBOUND_PATH}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "sign":
        headers["X-Twilio-Signature"] = RequestValidator(auth_token).compute_signature(url, form)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    conn = http.client.HTTPConnection("127.0.0.1", mon.port, timeout=15)
    try:
        conn.request("POST", INBOUND_PATH, body=urlencode(form).encode(), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def message_of(twiml: str) -> str:
    root = ElementTree.fromstring(twiml)
    assert root.tag == "Response", twiml
    return "".join(m.text or "" for m in root.iter("Message"))


@pytest.mark.timeout(120)
def test_an_sms_reply_acknowledges_the_latest_page_and_stops_the_repeats(
    hk_monitor: TwilioMonitor,
    fake: FakeTwilio,  # noqa: F811
) -> None:
    t0 = time.monotonic()
    mon = hk_monitor.start()
    mon.wait_ready()
    t_ready = time.monotonic()
    now = int(time.time())
    iid = f"I-SMS-{now}"
    oid = f"first_release_5h:{iid}"
    status, body = mon.post([{**incident("sms-1", iid, now + 2 - 5 * 3600), "unit": UNIT}])
    assert status == 202, body
    paged = wait_for(
        "li's breach SMS",
        lambda: [m for m in sms(fake) if m["to"] == LI_HK and iid in m["body"]],
        20,
    )
    assert repeat_no(paged[0]["body"]) == 1
    # the emergency office's copy of the same rung follows (pages are sent one by one)
    wait_for(
        "the emergency office paged too", lambda: {m["to"] for m in sms(fake)} >= {LI_HK, EO}, 10
    )
    token = fake.auth_token

    # forged or unsigned: 403, nothing happens
    assert reply(mon, "not-the-auth-token", LI_HK, "确认")[0] == 403
    assert reply(mon, token, LI_HK, "确认", signature=None)[0] == 403
    # a stranger: a neutral answer
    status, ctype, text = reply(mon, token, STRANGER, "确认")
    assert status == 200 and ctype.startswith("text/xml"), (status, text)
    assert message_of(text) == REPLY_UNKNOWN_NUMBER
    # li, not an acknowledgement: a hint
    assert message_of(reply(mon, token, LI_HK, "好的")[2]) == REPLY_HELP
    assert escalation(mon, oid)["stage"] == "breached"
    wait_for("li's page recorded as sent", lambda: page_recorded(mon, oid, "li"), 10)

    # li: 确认
    sid = f"SM{uuid.uuid4().hex}"
    t_reply = time.monotonic()
    status, ctype, text = reply(mon, token, LI_HK, " 确认! ", sid=sid)
    t_answered = time.monotonic()
    assert status == 200 and ctype.startswith("text/xml"), (status, text)
    said = message_of(text)
    assert said.startswith("【政务时限】已确认:首次权威发布·") and "(1级)" in said, said
    assert iid[-8:] in said or "…" in said
    acked = wait_for(
        "the ack applied",
        lambda: (e := escalation(mon, oid))["stage"] == "acknowledged" and e,
        10,
    )
    t_acked = time.monotonic()
    assert [(a["level"], a["person"]) for a in acked["acks"]] == [(1, "li")]
    assert acked["next_wake"] is None
    count = len(sms(fake))
    time.sleep(2.5 * REPEAT_S)
    assert len(sms(fake)) == count, [m["body"] for m in sms(fake)[count:]]

    # the same webhook again (Twilio retried it): the same answer; a new 确认: nothing left
    assert message_of(reply(mon, token, LI_HK, " 确认! ", sid=sid)[2]) == said
    assert message_of(reply(mon, token, LI_HK, "1")[2]) == REPLY_NOTHING
    assert escalation(mon, oid)["acks"] == acked["acks"]

    log_text = mon.log_path.read_text(errors="replace")
    assert re.search(rf"{re.escape(oid)} acknowledged at level 1 by li \(sms\)", log_text)
    assert "+852****4567" in log_text  # masked, and never whole
    for number in (LI_HK, STRANGER, LI_HK[1:], STRANGER[1:]):
        assert number not in log_text
    status, metrics = request(mon.port, "GET", "/metrics")
    assert 'govclock_notifications_total{channel="sms",state="acknowledged"} 1.0' in metrics
    assert "91234567" not in metrics
    replies = {
        o: float(m.group(1))
        for o in SMS_REPLY_OUTCOMES
        if (m := re.search(re.escape(f'_sms_replies_total{{outcome="{o}"}} ') + r"(\S+)", metrics))
    }
    assert set(replies) == set(SMS_REPLY_OUTCOMES), replies  # every outcome, from 0
    assert {o: n for o, n in replies.items() if n} == {
        "bad_signature": 2,
        "unknown_number": 1,
        "not_understood": 1,
        "acknowledged": 1,
        "duplicate": 1,
        "nothing": 1,
    }
    print(
        f"\nSMS reply: ready {t_ready - t0:.1f} s; reply answered in "
        f"{t_answered - t_reply:.2f} s, escalation acknowledged {t_acked - t_reply:.2f} s after "
        f"it; whole test {time.monotonic() - t0:.1f} s\n  answer: {said}"
    )
