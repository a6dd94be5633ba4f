"""Signed acknowledgement links: round trip, tampering, expiry, secrets, and the SMS budget.

The realistic messages come from the same scripted incident as tests/test_notifier.py (the
real ledger, escalation core and console channel), with links from ``make_ack_url``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_escalation import HOUR, MIN, POLICIES, ROSTER, T
from test_notifier import run

from channels.console import ConsoleChannel
from config.secrets import parse_secrets
from deadlines.escalation_state import Notify
from deadlines.escalation_texts import MAX_TEXT_CHARS
from escalation.links import (
    ACK_PATH,
    DEFAULT_TTL_S,
    MAX_LEVEL,
    MAX_LINK_CHARS,
    MAX_PARTITIONS,
    TOKEN_CHARS,
    AckError,
    AckIndex,
    ack_ref,
    ack_url,
    base_url_problems,
    make_ack_url,
    make_token,
    normalize_base_url,
    sms_segments,
    token_partition,
    verify,
)
from escalation.memory import Notifier

SECRET = "k" * 32
OTHER = "x" * 32
BASE = "https://gk.sh.gov.cn"  # 20 characters: a realistic short public URL
OB = "online_posting_10wd:沪交规〔2026〕2号"


def notify(**kw: object) -> Notify:
    fields: dict[str, object] = {
        "key": f"{OB}|breach@1773126000#0|L2|wang|0",
        "obligation_id": OB,
        "step": "breach@1773126000#0",
        "kind": "escalated",
        "level": 2,
        "unit": "u1",
        "unit_level": 2,
        "person_id": "wang",
        "phone": "+8613700137000",
        "masked_phone": "+86137****7000",
        "channel": "sms",
        "text": "【政务时限】X:已超时限。15:00发 确认{ack_url}",
        "at": T,
        "attempt": 0,
    }
    fields.update(kw)
    return Notify(**fields)  # type: ignore[arg-type]


def token_of(url: str) -> str:
    return url.rsplit(ACK_PATH, 1)[1]


def indexed(*pairs: tuple[str, str]) -> AckIndex:
    index = AckIndex()
    for ob, person in pairs:
        index.add(ob, person)
    return index


def test_round_trip_binds_obligation_level_person_and_expiry() -> None:
    index = AckIndex()
    url = ack_url(notify(), BASE, SECRET, index=index)
    assert url.startswith(BASE + ACK_PATH)
    token = token_of(url)
    assert len(token) == TOKEN_CHARS
    claim = verify(token, SECRET, T + 60, index)
    assert (claim.obligation_id, claim.level, claim.person_id) == (OB, 2, "wang")
    assert claim.expires_at == T + DEFAULT_TTL_S  # T is a whole minute
    assert claim.ref == ack_ref(OB, "wang")


def test_the_link_does_not_grow_with_the_obligation_id() -> None:
    long_id = "online_posting_10wd:" + "沪府办规〔2026〕" * 20
    a = ack_url(notify(obligation_id=long_id), BASE, SECRET)
    b = ack_url(notify(obligation_id="r:I1", person_id="a-very-long-person-id-0001"), BASE, SECRET)
    assert len(a) == len(b) == len(BASE) + len(ACK_PATH) + TOKEN_CHARS


def test_every_changed_character_is_refused() -> None:
    index = indexed((OB, "wang"))
    token = make_token(OB, 2, "wang", T + HOUR, SECRET)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, c in enumerate(token):
        other = alphabet[(alphabet.index(c) + 1) % 64]
        bad = token[:i] + other + token[i + 1 :]
        with pytest.raises(AckError) as err:
            verify(bad, SECRET, T, index)
        assert err.value.reason in ("malformed", "unknown", "forged"), (i, err.value)


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("level", lambda raw: raw[:1] + bytes([3 << 4 | raw[1] & 0xF]) + raw[2:]),
        ("partition", lambda raw: raw[:2] + bytes([raw[2] ^ 1]) + raw[3:]),
        ("expiry", lambda raw: raw[:3] + (int.from_bytes(raw[3:7]) + 600).to_bytes(4) + raw[7:]),
        ("tag", lambda raw: raw[:-1] + bytes([raw[-1] ^ 1])),
    ],
)
def test_a_re_encoded_token_with_another_claim_is_forged(what: str, change: object) -> None:
    index = indexed((OB, "wang"))
    raw = base64.urlsafe_b64decode(make_token(OB, 2, "wang", T + HOUR, SECRET))
    bad = base64.urlsafe_b64encode(change(raw)).decode()  # type: ignore[operator]
    with pytest.raises(AckError) as err:
        verify(bad, SECRET, T, index)
    assert err.value.reason == "forged", what


def test_another_person_or_obligation_under_the_same_ref_is_not_accepted() -> None:
    token = make_token(OB, 1, "li", T + HOUR, SECRET)
    ref = ack_ref(OB, "li")

    def loose(r: str) -> list[tuple[str, str]]:  # a lookup that answers anything
        return [(OB, "zhang"), ("other:I1", "li")]

    with pytest.raises(AckError) as err:
        verify(token, SECRET, T, loose)
    assert err.value.reason == "forged"

    def colliding(r: str) -> list[tuple[str, str]]:  # the real pair among others
        return [(OB, "zhang"), (OB, "li")] if r == ref else []

    assert verify(token, SECRET, T, colliding).person_id == "li"


def test_expiry_is_reported_only_for_a_genuine_token() -> None:
    index = indexed((OB, "wang"))
    token = make_token(OB, 2, "wang", T + HOUR, SECRET)
    assert verify(token, SECRET, T + HOUR - 1, index).expires_at == T + HOUR
    with pytest.raises(AckError) as err:
        verify(token, SECRET, T + HOUR, index)
    assert err.value.reason == "expired"
    assert err.value.message_zh == "确认链接已过期"
    with pytest.raises(AckError) as err:  # a forged one stays forged after its expiry
        verify(token, OTHER, T + 2 * HOUR, index)
    assert err.value.reason == "forged"


def test_wrong_secret_and_rotation() -> None:
    index = indexed((OB, "wang"))
    token = make_token(OB, 2, "wang", T + HOUR, SECRET)
    with pytest.raises(AckError) as err:
        verify(token, OTHER, T, index)
    assert err.value.reason == "forged"
    assert verify(token, [OTHER, SECRET], T, index).person_id == "wang"  # old key still valid
    assert verify(token, SECRET.encode(), T, index).level == 2  # str and bytes alike


def test_unknown_and_malformed_tokens() -> None:
    token = make_token(OB, 2, "wang", T + HOUR, SECRET)
    with pytest.raises(AckError) as err:
        verify(token, SECRET, T, AckIndex())
    assert err.value.reason == "unknown"
    for bad in ["", "abc", token + "A", token[:-1] + "=", token.replace(token[0], "+"), "é" * 24]:
        with pytest.raises(AckError) as err:
            verify(bad, SECRET, T, indexed((OB, "wang")))
        assert err.value.reason == "malformed", bad


def test_short_secrets_and_bad_urls_are_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        make_ack_url(BASE, "short")
    with pytest.raises(ValueError, match="http"):
        make_ack_url("gk.sh.gov.cn", SECRET)
    assert normalize_base_url("https://gk.sh.gov.cn/ ") == BASE
    assert base_url_problems(BASE) == []
    assert "third SMS segment" in base_url_problems("https://govclock.emergency.example.gov.cn")[0]


def test_the_index_rebuilds_from_states_and_forgets_finished_obligations() -> None:
    console = ConsoleChannel(io.StringIO())
    index = AckIndex()
    n = Notifier(
        POLICIES, ROSTER, {"sms": console}, ack_url=make_ack_url(BASE, SECRET, index=index)
    )
    run(n, T + 6 * HOUR + 1)
    rebuilt = AckIndex()
    rebuilt.add_states(n.states.values())
    for record in console.sent:
        token = token_of(record.text)
        assert verify(token, SECRET, T + 7 * HOUR, rebuilt) == verify(
            token, SECRET, T + 7 * HOUR, index
        )
    rebuilt.discard("first_release_5h:I1")
    assert len(rebuilt) == 0
    with pytest.raises(AckError, match="not known"):
        verify(token_of(console.sent[0].text), SECRET, T + 7 * HOUR, rebuilt)


def test_links_in_real_messages_verify_and_acknowledge_the_right_rung() -> None:
    """The scripted incident: every SMS carries a working link for its own person and rung;
    acknowledging through one stops the repeats."""
    console = ConsoleChannel(io.StringIO())
    index = AckIndex()
    n = Notifier(
        POLICIES, ROSTER, {"sms": console}, ack_url=make_ack_url(BASE, SECRET, index=index)
    )
    run(n, T + 6 * HOUR + 1)  # warnings, breach (li + eo-b), repeat, escalation to wang
    claims = [verify(token_of(r.text), SECRET, T + 6 * HOUR + 2, index) for r in console.sent]
    assert {(c.person_id, c.level) for c in claims} >= {("li", 1), ("eo-b", 1), ("wang", 2)}
    assert {c.obligation_id for c in claims} == {"first_release_5h:I1"}
    wang = next(c for c in claims if c.person_id == "wang")
    before = len(console.sent)
    n.acknowledge(wang.obligation_id, wang.level, wang.person_id, T + 6 * HOUR + 5 * MIN)
    n.tick(T + 9 * HOUR)
    assert len(console.sent) == before


def test_a_typical_message_with_its_link_is_two_segments() -> None:
    console = ConsoleChannel(io.StringIO())
    n = Notifier(POLICIES, ROSTER, {"sms": console}, ack_url=make_ack_url(BASE, SECRET))
    run(n, T + 6 * HOUR + 1)
    texts = [r.text for r in console.sent]
    link = len(BASE) + len(ACK_PATH) + TOKEN_CHARS
    assert link == 47 <= MAX_LINK_CHARS
    breach = next(t for t in texts if "请立即处置" in t)
    # 【政务时限】首次权威发布·I1:已超北京时间3月10日15:00时限,请立即处置。15:00发 确认<link>
    assert len(breach) == 50 + link
    for text in texts:
        assert len(text) - link <= MAX_TEXT_CHARS
        assert sms_segments(text) == 2, text


@given(
    ob=st.text(min_size=1, max_size=80),
    person=st.text(min_size=1, max_size=40),
    level=st.integers(1, MAX_LEVEL),
    partition=st.integers(0, MAX_PARTITIONS - 1),
    ttl=st.integers(60, 400 * 86_400),
)
def test_any_claim_round_trips(ob: str, person: str, level: int, partition: int, ttl: int) -> None:
    index = indexed((ob, person))
    url = ack_url(
        replace(notify(), obligation_id=ob, person_id=person, level=level),
        BASE,
        SECRET,
        ttl=ttl,
        partition=partition,
    )
    assert token_partition(token_of(url)) == partition
    claim = verify(token_of(url), SECRET, T, index)
    assert (claim.obligation_id, claim.person_id, claim.level) == (ob, person, level)
    assert claim.partition == partition
    assert T + ttl <= claim.expires_at < T + ttl + 60


def test_the_token_names_the_escalation_partition_for_routing() -> None:
    """A worker reads the partition before verifying (it cannot: the owner has the index);
    the link of every message names its obligation's partition."""
    partitions = {OB: 5, "first_release_5h:I1": 1}
    make = make_ack_url(BASE, SECRET, partition=lambda oid: partitions.get(oid, 0))
    assert token_partition(token_of(make(notify()))) == 5
    assert token_partition(token_of(make(notify(obligation_id="first_release_5h:I1")))) == 1
    assert token_partition(token_of(make_ack_url(BASE, SECRET)(notify()))) == 0  # default
    for bad in ("", "x" * 24, "A" * 25):
        with pytest.raises(AckError) as err:
            token_partition(bad)
        assert err.value.reason == "malformed"
    with pytest.raises(ValueError, match="level must be 1-15"):
        make_token(OB, 16, "wang", T, SECRET)
    with pytest.raises(ValueError, match="partition must be 0-4095"):
        make_token(OB, 1, "wang", T, SECRET, partition=4096)


def test_secret_lists_for_rotation() -> None:
    assert parse_secrets(f" {SECRET} , {OTHER},") == (SECRET, OTHER)
    for text, message in [("", "no secret"), (" , ", "no secret"), (f"{SECRET},short", "2 of 2")]:
        with pytest.raises(ValueError, match=message) as err:
            parse_secrets(text)
        assert "short" not in str(err.value) and SECRET not in str(err.value)


def test_sms_segments() -> None:
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("[" * 80) == 1 and sms_segments("[" * 81) == 2  # escapes count twice
    assert sms_segments("确" * 70) == 1
    assert sms_segments("确" * 71) == 2
    assert sms_segments("确" * 134) == 2
    assert sms_segments("确" * 135) == 3
