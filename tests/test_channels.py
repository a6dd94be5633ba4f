"""Channels: the real twilio SDK against a local fake Twilio (tests/fake_twilio.py), failure
injection with nothing lost or doubled, status callbacks with real signatures, the SentLog,
the console channel, and no phone number in the logs."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from channels.base import (
    Channel,
    MaskNumbersFilter,
    MemorySentLog,
    OutboundMessage,
    SendResult,
    SqliteSentLog,
    TransientChannelError,
    mask_numbers,
)
from channels.console import ConsoleChannel
from channels.twilio_errors import describe_error
from channels.twilio_http import RetryPolicy
from channels.twilio_sms import (
    STATUS_CALLBACK_PATH,
    TwilioConfig,
    TwilioSmsChannel,
    parse_status_callback,
    verify_status_callback,
)
from deadlines.escalation_state import DELIVERY_FAILED, DELIVERY_OK
from deadlines.roster import mask_phone
from tests.fake_twilio import SPEC_PATH, CallbackSink, FakeTwilio, twilio_signature

PHONE = "+8613800138000"
PHONE_MASKED = "+86138****8000"
FROM = "+15005550006"
TEXT = (
    "【政务时限】首次权威发布·I1:已超北京时间3月10日15:00时限,请立即处置。确认https://x.example/a/1"
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture(scope="module")
def sink() -> Iterator[CallbackSink]:
    with CallbackSink() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeTwilio, sink: CallbackSink) -> None:
    fake.reset()
    sink.reset()


class Sleeps(list[float]):
    """An injected sleep: records the delays, returns at once."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def channel(
    fake: FakeTwilio,
    *,
    sent_log: Any = None,
    sleeps: Callable[[float], None] | None = None,
    timeout: float = 3.0,
    retry: RetryPolicy | None = None,
    **config: Any,
) -> TwilioSmsChannel:
    settings: dict[str, Any] = {
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "from_number": FROM,
        "base_url": fake.base_url,
        "timeout": timeout,
    }
    settings.update(config)
    return TwilioSmsChannel(
        TwilioConfig(**settings),
        sent_log=sent_log,
        retry=retry or RetryPolicy(max_attempts=4, base_delay=0.5, jitter=0.0),
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


def message(key: str = "ob-1|breach@100#0|L1|li|0", to: str = PHONE, **kw: Any) -> OutboundMessage:
    return OutboundMessage(key=key, to=to, text=kw.pop("text", TEXT), **kw)


def methods(fake: FakeTwilio) -> list[tuple[str, int]]:
    return [(r.method, r.status) for r in fake.requests]


# ---------------------------------------------------------------------------------------
# The happy path and the callbacks


def test_send_creates_one_message_and_twilio_posts_signed_status_callbacks(
    fake: FakeTwilio, sink: CallbackSink
) -> None:
    sms = channel(fake)
    assert isinstance(sms, Channel)
    result = sms.send(message(status_callback_url=sink.url()))

    assert result.status == "queued" and result.ok
    assert result.provider_id is not None and result.provider_id.startswith("SM")
    assert len(result.provider_id) == 34
    assert (result.attempts, result.replayed, result.channel) == (1, False, "twilio")
    assert methods(fake) == [("POST", 201)]
    (created,) = fake.messages.values()
    assert created["sid"] == result.provider_id
    assert (created["to"], created["from"], created["body"]) == (PHONE, FROM, TEXT)
    sent = fake.requests[0].params
    assert sent["StatusCallback"] == sink.url()
    assert sms.sent_log.key_for(result.provider_id) == message().key

    first, second = sink.wait_for(2)
    for got in (first, second):
        signature = got.headers["X-Twilio-Signature"]
        assert verify_status_callback(fake.auth_token, got.url, got.params, signature)
        assert not verify_status_callback("0" * 32, got.url, got.params, signature)
        assert not verify_status_callback(
            fake.auth_token, got.url, {**got.params, "MessageStatus": "failed"}, signature
        )
        assert not verify_status_callback(fake.auth_token, got.url, got.params, None)
    assert parse_status_callback(first.params) == (result.provider_id, "sent", None)
    assert parse_status_callback(second.params) == (result.provider_id, "delivered", None)
    assert "delivered" in DELIVERY_OK
    # the fake's resource followed the callbacks
    assert fake.messages[result.provider_id]["status"] == "delivered"


def test_callback_url_from_public_url(fake: FakeTwilio) -> None:
    sms = channel(fake, public_url="https://govclock.example.gov.cn/")
    sms.send(message())
    assert fake.requests[0].params["StatusCallback"] == (
        "https://govclock.example.gov.cn" + STATUS_CALLBACK_PATH
    )


def test_messaging_service_instead_of_from(fake: FakeTwilio) -> None:
    service = "MG" + "0" * 32
    sms = channel(fake, from_number=None, messaging_service_sid=service)
    assert sms.send(message()).status == "queued"
    params = fake.requests[0].params
    assert params["MessagingServiceSid"] == service and "From" not in params


def test_fake_signature_is_twilios_algorithm() -> None:
    params = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "sent", "To": PHONE, "B": "x"}
    for url in ("http://127.0.0.1:8080/cb?x=1", "https://h.example/v1/channels/twilio/status"):
        assert twilio_signature("tok", url, params) == RequestValidator("tok").compute_signature(
            url, params
        )


def test_undelivered_callback_is_parsed_with_its_error_code(
    fake: FakeTwilio, sink: CallbackSink
) -> None:
    fake.final_status_next("undelivered", 30003)
    result = channel(fake).send(message(status_callback_url=sink.url()))
    sent, final = sink.wait_for(2)
    assert verify_status_callback(
        fake.auth_token, final.url, final.params, final.headers["X-Twilio-Signature"]
    )
    update = parse_status_callback(final.params)
    assert tuple(update) == (result.provider_id, "undelivered", 30003)
    assert update.status in DELIVERY_FAILED  # on_delivery falls back at once
    assert "unreachable" in describe_error(update.error_code)
    assert parse_status_callback(sent.params).status == "sent"


def test_failed_callback_skips_sent(fake: FakeTwilio, sink: CallbackSink) -> None:
    fake.final_status_next("failed", 30008)
    channel(fake).send(message(status_callback_url=sink.url()))
    (only,) = sink.wait_for(1)
    assert parse_status_callback(only.params)[1:] == ("failed", 30008)


def test_parse_status_callback_rejects_incomplete_forms() -> None:
    with pytest.raises(ValueError, match="MessageSid"):
        parse_status_callback({"MessageStatus": "sent"})
    with pytest.raises(ValueError, match="MessageStatus"):
        parse_status_callback({"MessageSid": "SM1"})
    assert parse_status_callback({"SmsSid": "SM1", "SmsStatus": "Sent", "ErrorCode": ""}) == (
        "SM1",
        "sent",
        None,
    )


# ---------------------------------------------------------------------------------------
# Failure injection: nothing lost, nothing doubled


def test_500_then_success_is_retried_once_and_sends_one_message(fake: FakeTwilio) -> None:
    fake.fail_next(status=500)
    sleeps = Sleeps()
    result = channel(fake, sleeps=sleeps).send(message())
    assert result.status == "queued" and result.attempts == 2
    # a 5xx is ambiguous: Twilio is asked for an earlier copy before the second create
    assert methods(fake) == [("POST", 500), ("GET", 200), ("POST", 201)]
    assert len(fake.messages) == 1
    assert sleeps == [0.5]


def test_429_waits_for_retry_after_and_does_not_look_up(fake: FakeTwilio) -> None:
    fake.throttle_next(retry_after=3)
    sleeps = Sleeps()
    result = channel(fake, sleeps=sleeps).send(message())
    assert result.status == "queued" and result.attempts == 2
    assert sleeps == [3.0]  # Retry-After beat the 0.5 s backoff
    assert methods(fake) == [("POST", 429), ("POST", 201)]
    assert len(fake.messages) == 1


def test_backoff_grows_exponentially(fake: FakeTwilio) -> None:
    fake.throttle_next(3, retry_after=None)
    sleeps = Sleeps()
    result = channel(fake, sleeps=sleeps).send(message())
    assert result.attempts == 4 and sleeps == [0.5, 1.0, 2.0]
    assert len(fake.messages) == 1


def test_retry_after_beyond_the_cap_gives_up_without_holding_the_thread(fake: FakeTwilio) -> None:
    fake.throttle_next(retry_after=600)
    sleeps = Sleeps()
    with pytest.raises(TransientChannelError) as info:
        channel(fake, sleeps=sleeps).send(message())
    assert info.value.retry_after == 600 and sleeps == []
    assert len(fake.messages) == 0


def test_timeout_after_twilio_accepted_does_not_double_send(fake: FakeTwilio) -> None:
    fake.delay_next(1.0, accept_first=True)  # Twilio took it; the answer comes too late
    sleeps = Sleeps()
    sms = channel(fake, sleeps=sleeps, timeout=0.3)
    result = sms.send(message())

    (only,) = fake.messages.values()
    assert result.provider_id == only["sid"]
    assert len(fake.creates()) == 1
    assert [r.method for r in fake.requests] == ["POST", "GET"]  # timed out, then looked
    assert result.attempts == 1 and result.status == "queued"
    # a redelivery of the same key is answered from the SentLog: no request at all
    again = sms.send(message())
    assert again.replayed and again.provider_id == result.provider_id
    assert len(fake.requests) == 2


def test_timeout_before_twilio_accepted_sends_once(fake: FakeTwilio) -> None:
    # slow, and Twilio creates the message only after we stopped waiting (0.3 s): the backoff
    # before the lookup (really slept here) lets the late create land, so the lookup finds it
    fake.delay_next(0.6, accept_first=False)
    waited = Sleeps()

    def sleep(seconds: float) -> None:
        waited(seconds)
        threading.Event().wait(seconds)

    retry = RetryPolicy(base_delay=1.0, jitter=0.0)
    result = channel(fake, sleeps=sleep, timeout=0.3, retry=retry).send(message())
    assert len(fake.messages) == 1 and result.provider_id in fake.messages
    assert [r.method for r in fake.requests] == ["POST", "GET"]
    assert waited == [1.0]


def test_undelivered_does_not_resend(fake: FakeTwilio, sink: CallbackSink) -> None:
    fake.final_status_next("undelivered", 30003)
    sms = channel(fake)
    result = sms.send(message(status_callback_url=sink.url()))
    sink.wait_for(2)
    assert sms.send(message(status_callback_url=sink.url())).replayed
    assert len(fake.creates()) == 1 and result.status == "queued"


def test_permanent_21211_is_translated_and_not_retried(fake: FakeTwilio) -> None:
    sleeps = Sleeps()
    sms = channel(fake, sleeps=sleeps)
    bad = message(to="+8612345")  # E.164-shaped, not a Chinese mobile number
    result = sms.send(bad)
    assert result.status == "failed" and not result.ok
    assert result.error_code == 21211 and result.provider_id is None
    assert result.error_message is not None
    assert "invalid recipient number" in result.error_message and "21211" in result.error_message
    assert result.attempts == 1 and sleeps == []
    assert methods(fake) == [("POST", 400)]
    # the refusal is final: a redelivery does not try again
    again = sms.send(bad)
    assert again.replayed and again.error_code == 21211
    assert len(fake.requests) == 1


def test_unsubscribed_21610_is_permanent(fake: FakeTwilio) -> None:
    fake.unsubscribed.add(PHONE)
    result = channel(fake).send(message())
    assert (result.status, result.error_code) == ("failed", 21610)
    assert result.error_message is not None and "unsubscribed" in result.error_message


def test_bad_credentials_are_permanent_and_named(fake: FakeTwilio) -> None:
    result = channel(fake, auth_token="wrong").send(message())
    assert (result.status, result.error_code) == ("failed", 20003)
    assert result.error_message is not None and "AUTH_TOKEN" in result.error_message


def test_retries_exhausted_raise_transient_and_a_redelivery_sends_once(fake: FakeTwilio) -> None:
    fake.fail_next(4, status=503)
    sleeps = Sleeps()
    sms = channel(fake, sleeps=sleeps)
    with pytest.raises(TransientChannelError) as info:
        sms.send(message())
    assert info.value.status == 503 and info.value.attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(fake.messages) == 0
    assert sms.sent_log.get(message().key) is None  # nothing final: redeliver later
    result = sms.send(message())  # the notifier redelivers
    assert result.status == "queued" and result.attempts == 5
    assert len(fake.messages) == 1
    assert fake.requests[-2].method == "GET"  # it looked before sending


def test_lookup_failure_never_creates(fake: FakeTwilio) -> None:
    fake.fail_next(status=500)  # create → 500 (ambiguous)
    fake.fail_next(3, status=500, target="list")  # … and every lookup fails too
    with pytest.raises(TransientChannelError, match="looking up"):
        channel(fake).send(message())
    assert len(fake.creates()) == 1  # never a second create while the first is unknown


def test_rfc9457_errors_of_newer_sdks_are_classified(fake: FakeTwilio) -> None:
    # twilio 9.x raises TwilioServiceException (not a TwilioRestException) for RFC-9457 bodies
    service_error = pytest.importorskip("twilio.base.exceptions").TwilioServiceException
    sms = channel(fake)
    failure = sms._classify(
        service_error("about:blank", "Invalid To", 400, 21211, detail=f"{PHONE} is bad"), 1
    )
    assert failure is not None and failure.error.permanent and failure.error.code == 21211
    throttled = sms._classify(service_error("about:blank", "Slow down", 429, 20429), 1)
    assert throttled is not None and not throttled.error.permanent and not throttled.ambiguous


def test_connection_refused_is_transient_and_not_ambiguous() -> None:
    sleeps = Sleeps()
    sms = TwilioSmsChannel(
        TwilioConfig(
            account_sid="AC" + "0" * 32,
            auth_token="t",
            from_number=FROM,
            base_url="http://127.0.0.1:9",
            timeout=1,
        ),
        retry=RetryPolicy(max_attempts=2, jitter=0),
        sleep=sleeps,
    )
    with pytest.raises(TransientChannelError, match="cannot connect"):
        sms.send(message())
    assert sleeps == [0.5]


def test_concurrent_sends_of_one_key_send_once(fake: FakeTwilio) -> None:
    fake.delay_next(0.2, accept_first=False)
    sms = channel(fake)
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: sms.send(message()), range(5)))
    assert len(fake.messages) == 1
    assert {r.provider_id for r in results} == set(fake.messages)
    assert sum(not r.replayed for r in results) == 1


def test_distinct_keys_with_the_same_text_are_not_confused(fake: FakeTwilio) -> None:
    sms = channel(fake)
    first = sms.send(message(key="k1"))
    fake.fail_next(status=500)  # k2's first create fails; its lookup sees k1's message
    second = sms.send(message(key="k2"))
    assert first.provider_id != second.provider_id  # k1's message is claimed by k1
    assert len(fake.messages) == 2


# ---------------------------------------------------------------------------------------
# The SentLog


def test_sqlite_sent_log_survives_reopen_and_prevents_a_second_send(
    fake: FakeTwilio, tmp_path: Path
) -> None:
    path = tmp_path / "sent.sqlite3"
    with SqliteSentLog(path) as log1:
        first = channel(fake, sent_log=log1).send(message())
    with SqliteSentLog(path) as log2:  # a restarted worker, a new client
        again = channel(fake, sent_log=log2).send(message())
        assert again.replayed and again.provider_id == first.provider_id
        assert (again.status, again.attempts) == ("queued", 1)
        assert first.provider_id is not None and log2.key_for(first.provider_id) == message().key
    assert len(fake.creates()) == 1 and len(fake.requests) == 1
    assert PHONE[1:] not in path.read_bytes().decode("utf-8", "replace")  # no number stored


def test_a_pending_key_from_a_crashed_run_is_looked_up_first(
    fake: FakeTwilio, tmp_path: Path
) -> None:
    path = tmp_path / "sent.sqlite3"
    with SqliteSentLog(path) as log1:
        crashed = channel(fake, sent_log=log1)
        log1.begin(message().key, 0.0)
        log1.note_attempt(message().key)
        # the crashed run's request reached Twilio; the process died before recording it
        earlier = crashed.client.messages.create(to=PHONE, from_=FROM, body=TEXT)
    with SqliteSentLog(path) as log2:
        result = channel(fake, sent_log=log2).send(message())
    assert result.provider_id == earlier.sid and len(fake.messages) == 1
    assert [r.method for r in fake.requests] == ["POST", "GET"]


def test_a_pending_key_that_never_reached_twilio_is_sent(fake: FakeTwilio) -> None:
    log = MemorySentLog()
    log.begin(message().key, 0.0)
    result = channel(fake, sent_log=log).send(message())
    assert result.status == "queued"
    assert [r.method for r in fake.requests] == ["GET", "POST"]
    assert len(fake.messages) == 1


def test_memory_and_sqlite_logs_agree(tmp_path: Path) -> None:
    for log in (MemorySentLog(), SqliteSentLog(tmp_path / "s.db")):
        pending = log.begin("k", 5.0)
        assert not pending.resumed and log.get("k") is None
        assert log.begin("k", 9.0) == type(pending)("k", 5.0, 0, True)
        assert log.note_attempt("k") == 1
        log.record(SendResult("k", "failed", None, 21211, "bad", 1, "twilio"))
        got = log.get("k")
        assert got is not None and (got.status, got.error_code, got.attempts) == (
            "failed",
            21211,
            1,
        )
        log.record(SendResult("j", "sent", "SM1", attempts=2, channel="x"))
        assert log.key_for("SM1") == "j" and log.key_for("SM2") is None
        log.close()


# ---------------------------------------------------------------------------------------
# The console channel


def test_console_prints_masked_records_and_is_idempotent() -> None:
    out = io.StringIO()
    console = ConsoleChannel(out)
    result = console.send(message(text="到期了 确认https://x/a"))
    assert out.getvalue() == f"[SMS to {PHONE_MASKED}] 到期了 确认https://x/a\n"
    assert (result.status, result.provider_id, result.channel) == ("sent", "console-1", "console")
    assert [r.key for r in console.sent] == [message().key]
    assert console.sent[0].to == PHONE  # in memory, for tests
    assert console.send(message()).replayed
    assert out.getvalue().count("\n") == 1 and len(console.sent) == 1


def test_console_never_fails() -> None:
    broken = io.StringIO()
    broken.close()
    console = ConsoleChannel(broken)
    assert console.send(message()).status == "sent"
    assert len(console.sent) == 1


# ---------------------------------------------------------------------------------------
# Masking


def test_outbound_message_hides_the_number() -> None:
    assert PHONE not in repr(message())
    assert message().masked_to == PHONE_MASKED
    with pytest.raises(ValueError) as info:
        OutboundMessage(key="k", to="13800138000", text="x")
    assert "13800138000" not in str(info.value)


def test_mask_numbers() -> None:
    text = (
        f"To {PHONE} (%2B8613800138000), bare 13800138000 and 8613800138000; "
        "SID SM13800138000aaaaaaaaaaaaaaaaaaa, epoch 1741590000, ms 1741590000123"
    )
    masked = mask_numbers(text)
    assert "13800138000" not in masked.replace("SM13800138000", "")
    assert PHONE_MASKED in masked and "%2B86138****8000" in masked
    assert "138****8000" in masked
    assert "SM13800138000aaaaaaaaaaaaaaaaaaa" in masked
    assert "1741590000" in masked and "1741590000123" in masked
    assert mask_phone(PHONE) == PHONE_MASKED


def test_masked_records_are_final_for_formatters_that_format_args_again() -> None:
    """A masked record has no arguments left, as an empty tuple: a formatter that wraps
    ``None`` into ``(None,)`` (mode's, in the worker) must not %-format "%2B86…" again."""
    record = logging.LogRecord(
        "twilio.http", logging.INFO, __file__, 1, f"GET ?To=%2B{PHONE[1:]}&PageSize=20", (), None
    )
    assert MaskNumbersFilter().filter(record)
    assert record.args == () and record.getMessage() == "GET ?To=%2B86138****8000&PageSize=20"
    from mode.utils.logging import ExtensionFormatter  # the worker's

    worker = ExtensionFormatter(io.StringIO(), fmt="%(message)s")
    assert worker.format(record) == "GET ?To=%2B86138****8000&PageSize=20"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s: %d", (PHONE, 3), None)
    assert MaskNumbersFilter().filter(record)
    assert record.getMessage() == f"to {PHONE_MASKED}: 3" and not record.args


def test_no_phone_number_in_the_logs(
    fake: FakeTwilio, sink: CallbackSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sms = channel(fake, timeout=0.3)
    fake.delay_next(0.6)  # timeout → lookup with ?To=… (logged by the SDK and urllib3)
    sms.send(message(status_callback_url=sink.url()))
    fake.fail_next(status=500)
    sms.send(message(key="k2", to="+8613912345678"))
    sms.send(message(key="k3", to="+8612345"))  # 21211: Twilio's message names the number
    sms.send(message())  # replayed
    ConsoleChannel(io.StringIO()).send(message(key="k4"))
    sink.wait_for(2)

    text = caplog.text
    assert "GET" in text and "Query Params" in text  # the SDK's HTTP log was captured
    assert PHONE_MASKED in text and "+86139****5678" in text
    for number in (PHONE, "+8613912345678", "+8612345"):
        digits = number[1:]
        assert digits not in text, f"{mask_phone(number)} appears unmasked"


# ---------------------------------------------------------------------------------------
# The fake itself follows the spec


def test_fake_follows_the_openapi_spec(fake: FakeTwilio) -> None:
    if fake.spec is None:
        pytest.skip(fake.spec_skipped or "no spec")
    result = channel(fake).send(message())
    resource = fake.messages[result.provider_id or ""]
    assert set(resource) <= set(fake.spec.message_properties)
    assert resource["status"] in fake.spec.message_statuses
    client = channel(fake).client
    with pytest.raises(TwilioRestException) as info:  # no From and no MessagingServiceSid
        client.messages.create(to=PHONE, body="x")
    assert info.value.code == 21603
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=PHONE, from_=FROM)
    assert info.value.code == 21602
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=PHONE, from_=FROM, body="x", messaging_service_sid="MGbad")
    assert info.value.status == 400


def test_fake_without_the_spec_says_so(tmp_path: Path) -> None:
    spec_less = FakeTwilio(spec_path=tmp_path / "missing.json")
    assert spec_less.spec is None
    assert spec_less.spec_skipped is not None and "not found" in spec_less.spec_skipped
    assert SPEC_PATH.name == "twilio_api_v2010.json"


# ---------------------------------------------------------------------------------------
# Configuration


def test_config_from_env() -> None:
    with pytest.raises(ValueError, match="GOVCLOCK_TWILIO_ACCOUNT_SID"):
        TwilioConfig.from_env({})
    with pytest.raises(ValueError, match="GOVCLOCK_TWILIO_FROM"):
        TwilioConfig.from_env(
            {"GOVCLOCK_TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "GOVCLOCK_TWILIO_AUTH_TOKEN": "t"}
        )
    config = TwilioConfig.from_env(
        {
            "GOVCLOCK_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "GOVCLOCK_TWILIO_AUTH_TOKEN": "secret",
            "GOVCLOCK_TWILIO_FROM": FROM,
            "GOVCLOCK_PUBLIC_URL": "https://g.example",
        }
    )
    assert config.status_callback_url() == "https://g.example" + STATUS_CALLBACK_PATH
    assert "secret" not in repr(config)
