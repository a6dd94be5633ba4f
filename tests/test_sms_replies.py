"""SMS replies that acknowledge, without a broker: what a body means, the TwiML answers, the
unacknowledged pages the notifier keeps by person, how the workers' answers are merged and
decided, and the inbound webhook's signature (signed with the twilio SDK's own
``RequestValidator``). Also the merge of ``GET /v1/obligations`` across workers.

The escalation is that of tests/test_notifier_agent.py (li and the emergency office eo-b are
paged at the breach; zhang is li's fallback)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest
from test_metrics import scrape
from test_notifier_agent import BREACH, EO_B, LI, MIN, N, P, Rig, key_to, notifier_app, service
from twilio.request_validator import RequestValidator

from escalation import replies
from escalation.inputs import ack_input, delivery_input
from escalation.pages import open_pages_of
from escalation.replies import (
    REPLY_HELP,
    REPLY_LINK_EXPIRED,
    REPLY_LINK_INVALID,
    REPLY_NOTHING,
    REPLY_UNAVAILABLE,
    REPLY_UNKNOWN_NUMBER,
    ReplyIntent,
    interpret_reply,
    normalize_reply,
    reply_acknowledged,
    twiml,
)
from metrics.collectors import SMS_REPLY_OUTCOMES, Metrics
from streams.topics import ESCALATION_INPUTS
from web import obligations as web_obligations
from web import peers as web_peers
from web import responses as web_responses
from web import twilio as web_twilio

TOKEN = "AhACAcL-xDSxUSUJ51s8skWv"
FR = "first_release_5h:I1"


# -- what a reply means --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["1", " 1 ", "１", "确认", "确认!", "【确认】", "收到。", " 收到 \n", "确认收到", "OK",
     "ok.", "ＯＫ", "Ack", "ACK!", "“确认”", "～确认～"],
)  # fmt: skip
def test_acknowledgement_words_in_any_case_width_or_punctuation(body: str) -> None:
    assert interpret_reply(body) == ReplyIntent("ack")


@pytest.mark.parametrize("body", ["", "2", "11", "好的", "不确认", "ok 1", "STOP", "确 认"])
def test_anything_else_changes_nothing(body: str) -> None:
    assert interpret_reply(body) == ReplyIntent("other")


def test_a_link_or_a_bare_token_names_the_page() -> None:
    sms = f"【政务时限】首次权威发布·I1:已超…请立即处置。15:00发 确认https://gk.sh.gov.cn/a/{TOKEN}"
    assert interpret_reply(sms) == ReplyIntent("token", TOKEN)
    assert interpret_reply(f"https://gk.sh.gov.cn/a/{TOKEN}。") == ReplyIntent("token", TOKEN)
    assert interpret_reply(f" {TOKEN} ") == ReplyIntent("token", TOKEN)
    assert interpret_reply(f"确认 {TOKEN}") == ReplyIntent("token", TOKEN)
    assert interpret_reply(f"x{TOKEN}") == ReplyIntent("other")  # 25 characters: not a token
    assert normalize_reply(" 【ＯＫ】! ") == "ok"


def test_answers_are_short_chinese_twiml() -> None:
    text = reply_acknowledged("首次权威发布", "I-LONG-" + "9" * 40, 1, remaining=2)
    assert text.startswith("【政务时限】已确认:首次权威发布·I-LONG-") and "…(1级)" in text
    assert "另有2项待确认" in text
    two = reply_acknowledged("首次权威发布", "I1", 2)
    for t in (REPLY_HELP, REPLY_NOTHING, REPLY_UNAVAILABLE, two):
        assert len(t) <= 70, t
    assert twiml("a<b&c") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>a&lt;b&amp;c</Message></Response>'
    )
    assert twiml(None).endswith("<Response/>")


# -- the pages a reply can acknowledge ---------------------------------------------------------


async def test_open_pages_follow_the_breach_the_failures_and_the_ack() -> None:
    rig = Rig()
    await rig.start()
    await rig.until(BREACH - 1)
    runtime = rig.notifier
    assert runtime.open_pages(["li", "eo-b"]) == []  # warnings are not breach pages
    await rig.until(BREACH)
    pages = runtime.open_pages(["li", "eo-b", "zhang"])
    assert [(p.person_id, p.level, p.at, p.partition) for p in pages] == [
        ("li", 1, BREACH, P),
        ("eo-b", 1, BREACH, P),
    ]
    assert all(p.obligation_id == FR and p.short_name == "首次权威发布" for p in pages)
    assert runtime.open_pages(["li"], since=BREACH + 1) == []  # older than the TTL allows

    # li's page undelivered: not li's any more, zhang's fallback is
    sid = rig.phone.log.get(key_to(rig.state(), "li", "breached"))
    assert sid is not None
    rig.clock.now = BREACH + 40
    await rig.put(delivery_input(None, sid.provider_id, "undelivered", 30003, BREACH + 40))
    assert [p.person_id for p in runtime.open_pages(["li", "zhang"])] == ["zhang"]
    await rig.until(BREACH + 30 * MIN)  # the repeat reaches li again
    latest = runtime.open_pages(["li"])
    assert [(p.person_id, p.at) for p in latest] == [("li", BREACH + 30 * MIN)]
    assert latest[0].key.endswith("|L1|li|0") and "#1|" in latest[0].key

    # rebuilt from the table after a restart, gone after an ack
    again = Rig(phone=rig.phone, store=dict(rig.store))
    again.notifier.restore([P], again.store.items())
    assert again.notifier.open_pages(["li"]) == latest
    again.notifier.restore([(P + 1) % N], again.store.items())  # P moved away
    assert again.notifier.open_pages(["li", "zhang", "eo-b"]) == []
    rig.clock.now = BREACH + 31 * MIN
    await rig.put(ack_input(FR, 1, "eo-b", BREACH + 31 * MIN))
    assert runtime.open_pages(["li", "zhang", "eo-b"]) == []
    assert open_pages_of(rig.state(), P) == {}


# -- merging what the workers answer, and deciding ------------------------------------------


def page(oid: str, person: str, at: int, level: int = 1) -> dict[str, object]:
    return {
        "obligation_id": oid,
        "person_id": person,
        "level": level,
        "at": at,
        "key": f"{oid}|breach@1#0|L{level}|{person}|0",
        "partition": 0,
        "short_name": "首次权威发布",
        "subject_id": oid.split(":")[1],
    }


def test_the_most_recent_page_over_all_workers_is_acknowledged() -> None:
    a = {"partitions": [0, 1], "pages": [page("r:A", "li", 100)], "token": None}
    b = {"partitions": [2, 3], "pages": [page("r:B", "li", 200), page("r:C", "li", 50)]}
    dup = {"partitions": [2], "pages": [page("r:B", "li", 190)]}  # a stale copy: the later wins
    lookup = replies.merge_reply_answers([a, b, dup])
    assert lookup.partitions == {0, 1, 2, 3}
    assert [p["obligation_id"] for p in lookup.pages] == ["r:B", "r:A", "r:C"]
    decision = replies.decide_reply(ReplyIntent("ack"), lookup, 4)
    assert decision.ack == ("r:B", 1, "li") and decision.outcome == "acknowledged"
    assert "已确认:首次权威发布·B(1级)" in decision.text and "另有2项" in decision.text

    # a worker that did not answer might hold a later page: acknowledge nothing, say retry
    partial = replies.merge_reply_answers([a])
    assert replies.decide_reply(ReplyIntent("ack"), partial, 4) == replies.ReplyDecision(
        "unavailable", REPLY_UNAVAILABLE
    )
    nothing = replies.merge_reply_answers([{**a, "pages": []}, {**b, "pages": []}])
    assert replies.decide_reply(ReplyIntent("ack"), nothing, 4).text == REPLY_NOTHING
    assert replies.decide_reply(ReplyIntent("other"), lookup, 4).text == REPLY_HELP


def test_a_link_is_decided_by_the_worker_that_owns_its_partition() -> None:
    claim = {
        "obligation_id": "r:A",
        "level": 2,
        "person_id": "wang",
        "short_name": "首次权威发布",
        "subject_id": "A",
    }
    answers = [
        {"partitions": [0, 1], "pages": [], "token": None},
        {"partitions": [2, 3], "pages": [page("r:B", "li", 9)], "token": {"claim": claim}},
    ]
    intent = ReplyIntent("token", TOKEN)
    decision = replies.decide_reply(intent, replies.merge_reply_answers(answers), 4, token_at=3)
    assert decision.ack == ("r:A", 2, "wang") and "(2级)" in decision.text
    assert "另有1项" in decision.text
    expired = [answers[0], {**answers[1], "token": {"error": "expired"}}]
    assert replies.decide_reply(intent, replies.merge_reply_answers(expired), 4, 3).text == (
        REPLY_LINK_EXPIRED
    )
    forged = [answers[0], {**answers[1], "token": {"error": "forged"}}]
    assert replies.decide_reply(intent, replies.merge_reply_answers(forged), 4, 3).text == (
        REPLY_LINK_INVALID
    )
    # the owner of partition 3 did not answer
    assert replies.decide_reply(intent, replies.merge_reply_answers(answers[:1]), 4, 3).text == (
        REPLY_UNAVAILABLE
    )


def test_a_message_sid_is_answered_once() -> None:
    recent = web_twilio.RecentReplies(size=2)
    recent.put("SM1", "a")
    recent.put("SM2", "b")
    recent.put("SM3", "c")
    assert (recent.get("SM1"), recent.get("SM3"), recent.get("")) == (None, "c", None)


# -- the webhook's signature -------------------------------------------------------------------


def test_inbound_messages_are_verified_with_twilios_request_validator() -> None:
    svc = service()
    path = "/v1/channels/twilio/inbound"
    form = {"MessageSid": "SMin1", "From": LI, "To": "+15005550006", "Body": "确认"}
    from urllib.parse import urlencode

    body = urlencode(form).encode()
    signature = RequestValidator("tok" * 8).compute_signature(
        "https://govclock.example.gov.cn" + path, form
    )
    message = web_twilio.check_inbound(svc, path, body, {"X-Twilio-Signature": signature})
    assert (message.sid, message.from_number, message.body) == ("SMin1", LI, "确认")
    assert LI not in repr(message) and "确认" not in repr(message)
    assert (
        web_twilio.people_with_phone(svc, LI) == ["li"]
        and web_twilio.people_with_phone(svc, "+1555") == []
    )
    for headers in ({}, {"X-Twilio-Signature": signature[:-4] + "AAA="}):
        with pytest.raises(web_responses.Refused) as exc:
            web_twilio.check_inbound(svc, path, body, headers)
        assert exc.value.status == 403
    tampered = urlencode({**form, "From": EO_B}).encode()
    with pytest.raises(web_responses.Refused) as exc:
        web_twilio.check_inbound(svc, path, tampered, {"X-Twilio-Signature": signature})
    assert exc.value.status == 403
    with pytest.raises(web_responses.Refused) as exc:
        web_twilio.check_inbound(None, path, body, {"X-Twilio-Signature": signature})
    assert exc.value.status == 404
    no_from = {k: v for k, v in form.items() if k != "From"}
    signed = RequestValidator("tok" * 8).compute_signature(
        "https://govclock.example.gov.cn" + path, no_from
    )
    with pytest.raises(web_responses.Refused) as exc:
        web_twilio.check_inbound(
            svc, path, urlencode(no_from).encode(), {"X-Twilio-Signature": signed}
        )
    assert exc.value.status == 400


# -- the route: what came of each reply, counted ---------------------------------------------

PUBLIC = "https://govclock.example.gov.cn"
AUTH_TOKEN = "tok" * 8
ZHANG = "+8613800138000"


@pytest.fixture
def twilio_ctx(tmp_path: Path) -> Any:
    """The worker's app with the notifier and Twilio on, no broker (nothing is started)."""
    return notifier_app(
        tmp_path,
        partitions=N,
        ack_secret="sms-reply-test-ack-secret-0123456",
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from="+15005550006",
        public_url=PUBLIC,
    )


async def test_the_inbound_route_counts_every_reply_by_outcome(
    twilio_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = twilio_ctx
    path = "/v1/channels/twilio/inbound"
    got = scrape(ctx.metrics.registry)
    assert {o: got[f'govclock_sms_replies_total{{outcome="{o}"}}'] for o in SMS_REPLY_OUTCOMES} == {
        o: 0 for o in SMS_REPLY_OUTCOMES
    }  # every outcome from the start
    # this worker holds every escalation partition, li and eo-b paged at the breach a minute ago
    rig = Rig()
    await rig.start()
    await rig.until(BREACH)
    runtime = ctx.notifier.runtime
    assert runtime.restore(range(N), rig.store.items()) == 1
    runtime.restored = True
    mine = {TP(ESCALATION_INPUTS, p) for p in range(N)}
    monkeypatch.setattr(ctx.app.assignor, "assigned_actives", lambda: mine)
    monkeypatch.setattr(web_twilio, "time", SimpleNamespace(time=lambda: BREACH + 60))
    acks: list[tuple[str, int, str, str]] = []

    async def submit_ack(_: Any, oid: str, level: int, person: str, at: int, *, via: str) -> None:
        acks.append((oid, level, person, via))

    monkeypatch.setattr(web_twilio, "submit_ack", submit_ack)

    async with TestClient(TestServer(ctx.app.web.web_app)) as client:

        async def reply(
            sender: str | None, body: str, sid: str, signed: bool = True
        ) -> tuple[int, str]:
            form = {"MessageSid": sid, "To": "+15005550006", "Body": body}
            if sender is not None:
                form["From"] = sender
            signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, form)
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature if signed else "forged",
            }
            response = await client.post(path, data=urlencode(form), headers=headers)
            return response.status, await response.text()

        assert (await reply(LI, "确认", "SM1", signed=False))[0] == 403
        assert (await reply(None, "确认", "SM2"))[0] == 400
        assert REPLY_UNKNOWN_NUMBER in (await reply("+14155550199", "确认", "SM3"))[1]
        assert REPLY_HELP in (await reply(LI, "好的", "SM4"))[1]
        assert REPLY_NOTHING in (await reply(ZHANG, "1", "SM5"))[1]  # zhang was not paged
        status, text = await reply(LI, " 确认! ", "SM6")
        assert status == 200 and "已确认" in text and acks == [(FR, 1, "li", "sms")]
        assert (await reply(LI, " 确认! ", "SM6"))[1] == text  # Twilio retried: same answer
        assert REPLY_LINK_INVALID in (await reply(LI, f"确认 {TOKEN}", "SM7"))[1]
    assert len(acks) == 1

    got = scrape(ctx.metrics.registry)
    counted = {o: got[f'govclock_sms_replies_total{{outcome="{o}"}}'] for o in SMS_REPLY_OUTCOMES}
    assert {o: n for o, n in counted.items() if n} == {
        "bad_signature": 1,
        "bad_request": 1,
        "unknown_number": 1,
        "not_understood": 1,
        "nothing": 1,
        "acknowledged": 1,
        "duplicate": 1,
        "link_invalid": 1,
    }
    assert got['govclock_events_rejected_total{reason="signature"}'] == 1
    text = generate_latest(ctx.metrics.registry).decode()
    for number in (LI, ZHANG, "+14155550199"):
        assert number[3:] not in text


def test_sms_reply_outcomes_are_bounded() -> None:
    """Every decision ``decide_reply`` can make is a label of its own; nothing else is."""
    metrics = Metrics(CollectorRegistry())
    decided = {
        replies.decide_reply(ReplyIntent("other"), replies.ReplyLookup(), N).outcome,
        replies.decide_reply(ReplyIntent("ack"), replies.ReplyLookup(), N).outcome,
        replies.decide_reply(
            ReplyIntent("ack"), replies.ReplyLookup(partitions=set(range(N))), N
        ).outcome,
        replies.decide_reply(ReplyIntent("token", TOKEN), replies.ReplyLookup(), N, 0).outcome,
        replies.decide_reply(
            ReplyIntent("token", TOKEN), replies.ReplyLookup(token_error="expired"), N
        ).outcome,
        replies.decide_reply(ReplyIntent("token", TOKEN), replies.ReplyLookup(), N).outcome,
    }
    assert decided == {"not_understood", "unavailable", "nothing", "link_expired", "link_invalid"}
    assert decided | {"acknowledged", "acknowledged_link"} <= set(SMS_REPLY_OUTCOMES)
    for outcome in SMS_REPLY_OUTCOMES:
        metrics.sms_reply(outcome)
    with pytest.raises(ValueError):
        metrics.sms_reply("+8613900139000")
    assert len(SMS_REPLY_OUTCOMES) == len(set(SMS_REPLY_OUTCOMES)) == 11


# -- GET /v1/obligations across workers ----------------------------------------------------------


def ob(oid: str, due: str) -> dict[str, str]:
    return {"id": oid, "due_at": due}


def test_the_cluster_list_is_merged_sorted_and_says_what_is_missing() -> None:
    meta = {"http://a:1/": {"gk-subjects-changelog": [2, 0]}, "http://b:2": {"x": [1], "y": [3]}}
    assert web_peers.partitions_by_url(meta) == {"http://a:1": [0, 2], "http://b:2": [1, 3]}
    here = {
        "url": "http://a:1",
        "answer": {"partitions": [0, 2], "obligations": [ob("r:A", "2026-03-10T15:00:00+08:00")]},
    }
    peer = {
        "url": "http://b:2",
        "answer": {
            "partitions": [1, 3],
            "obligations": [
                ob("r:C", "2026-03-10T14:00:00+08:00"),
                ob("r:A", "2026-03-10T15:00:00+08:00"),  # during a rebalance: once only
                ob("r:B", "2026-03-10T15:00:00+08:00"),
            ],
        },
    }
    full = web_obligations.merge_obligation_lists([here, peer], 4)
    assert [o["id"] for o in full["obligations"]] == ["r:C", "r:A", "r:B"]
    assert (full["partitions"], full["partial"], full["missing_partitions"]) == (
        [0, 1, 2, 3],
        False,
        [],
    )
    down = web_obligations.merge_obligation_lists(
        [here, {"url": "http://b:2", "error": "TimeoutError"}], 4
    )
    assert [o["id"] for o in down["obligations"]] == ["r:A"]
    assert (down["partial"], down["missing_partitions"]) == (True, [1, 3])
    assert down["workers"][1] == {"url": "http://b:2", "partitions": [], "error": "TimeoutError"}
