"""SMS through Twilio's Messages API, with the real ``twilio`` SDK (9.x).

``TwilioSmsChannel(config).send(message)`` creates one Message
(``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: ``To``, ``Body``, ``From`` or
``MessagingServiceSid``, ``StatusCallback``) and returns a :class:`SendResult` with the ``SM…``
SID. This module holds the configuration, the channel and the inbound webhooks (status
callbacks, replies); error codes in words are :mod:`channels.twilio_errors`, the HTTP client,
failure classification and retry policy :mod:`channels.twilio_http`. What it adds to the SDK:

* **Retries** with exponential backoff (:class:`~channels.twilio_http.RetryPolicy`: bounded
  attempts, injectable ``sleep``) on HTTP 429, 5xx, timeouts and connection errors;
  ``Retry-After`` is honoured. 4xx answers other than 429 are permanent: a ``failed`` result
  with the error translated (:func:`~channels.twilio_errors.describe_error`).
* **No double sends.** Twilio's Messages API has no idempotency header, so:

  1. the :class:`SentLog` is consulted first: a key with a final result is answered from it
     without calling Twilio (redeliveries, restarts with :class:`SqliteSentLog`);
  2. the key is marked *pending* before the first request;
  3. after an *ambiguous* failure (read timeout, connection dropped after the request went out,
     5xx) and when a pending key is resumed by a later run, Twilio is asked first whether the
     message already exists: ``GET Messages.json?To=…&From=…`` (most recent first), matching
     the exact body, created since the first attempt (minus ``lookup_skew``), and not
     already claimed by another key in the SentLog. Found → that SID is the result; not
     found → send. Unambiguous failures (429, connect timeout, connection refused) skip it.

  Residual risk (docs/twilio.md): a request Twilio accepts *after* our lookup ran (it was
  still in flight, or the list is briefly behind) is sent twice; and two keys sending the
  same body to the same number while both are unresolved could be confused. Bodies carrying a
  per-message ack link make the second practically impossible.
* **Masking.** Every log line carries ``mask_phone`` forms only; the SDK's HTTP logger (which
  logs query parameters such as ``To``) and urllib3's get a :class:`MaskNumbersFilter`.
* **Inbound status callbacks**: :func:`verify_status_callback` (Twilio's ``RequestValidator``)
  and :func:`parse_status_callback` → ``(provider_id, status, error_code)``; map the SID back
  to the message key with ``sent_log.key_for(sid)`` and call ``on_delivery``.
* **Inbound messages** (SMS replies to the Twilio number): :func:`verify_webhook` (the same
  check) and :func:`parse_inbound_message` → ``(sid, from_number, to_number, body)``; what a
  reply means is :mod:`escalation.replies`.

Pointing the SDK elsewhere (tests, an egress proxy): ``base_url`` replaces scheme and host of
every ``*.twilio.com`` URL in the HTTP client (:class:`~channels.twilio_http.HttpClient`),
*after* the SDK's region/edge rewriting, so it works with any region setting.
(``client.api.base_url = …`` also works, but the SDK's region/edge logic would then mangle an
IP-address host.)
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels.base import (
    ChannelError,
    MemorySentLog,
    OutboundMessage,
    SendResult,
    SendStatus,
    SentLog,
    TransientChannelError,
    install_mask_filter,
)
from channels.twilio_errors import describe_error, int_or_none
from channels.twilio_http import Failure, HttpClient, RetryPolicy, classify_failure

__all__ = [
    "ENV",
    "INBOUND_PATH",
    "STATUS_CALLBACK_PATH",
    "InboundMessage",
    "StatusCallback",
    "TwilioConfig",
    "TwilioSmsChannel",
    "parse_inbound_message",
    "parse_status_callback",
    "verify_status_callback",
    "verify_webhook",
]

log = logging.getLogger("govclock.channels.twilio")
#: The logger handed to the SDK's HTTP client (it logs URLs, query parameters and headers).
http_log = logging.getLogger("govclock.channels.twilio.http")

#: Where the web server should receive Twilio's status callbacks (under GOVCLOCK_PUBLIC_URL).
STATUS_CALLBACK_PATH = "/v1/channels/twilio/status"
#: Where the web server receives the SMS replies to the Twilio number (its "A message comes
#: in" webhook, configured in the Twilio console as GOVCLOCK_PUBLIC_URL + this path).
INBOUND_PATH = "/v1/channels/twilio/inbound"

#: Environment variables read by :meth:`TwilioConfig.from_env`.
ENV = {
    "account_sid": "GOVCLOCK_TWILIO_ACCOUNT_SID",
    "auth_token": "GOVCLOCK_TWILIO_AUTH_TOKEN",
    "from_number": "GOVCLOCK_TWILIO_FROM",
    "messaging_service_sid": "GOVCLOCK_TWILIO_MESSAGING_SERVICE_SID",
    "base_url": "GOVCLOCK_TWILIO_BASE_URL",
    "region": "GOVCLOCK_TWILIO_REGION",
    "edge": "GOVCLOCK_TWILIO_EDGE",
    "timeout": "GOVCLOCK_TWILIO_TIMEOUT",
    "public_url": "GOVCLOCK_PUBLIC_URL",
}

# A non-empty mapping without TWILIO_* names: the SDK reads TWILIO_ACCOUNT_SID, TWILIO_REGION,
# TWILIO_EDGE … from ``environment or os.environ``; an empty dict would fall back to
# os.environ, so configuration could leak in from the process environment unnoticed.
_ISOLATED_ENV = {"GOVCLOCK_TWILIO_CLIENT": "isolated"}


# ---------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str | None = None
    messaging_service_sid: str | None = None
    public_url: str | None = None  # base of the status-callback URL
    base_url: str | None = None  # replace https://*.twilio.com (tests, egress proxies)
    region: str | None = None
    edge: str | None = None
    timeout: float = 10.0  # seconds per HTTP request (connect and read)

    def __post_init__(self) -> None:
        if not self.account_sid.startswith("AC"):
            raise ValueError(f"{ENV['account_sid']}: an account SID starts with AC")
        if not self.auth_token:
            raise ValueError(f"{ENV['auth_token']} is empty")
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError(f"set {ENV['from_number']} or {ENV['messaging_service_sid']}")
        if self.timeout <= 0:
            raise ValueError(f"{ENV['timeout']} must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TwilioConfig:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(ENV[name], "").strip()
            return value or None

        missing = [ENV[n] for n in ("account_sid", "auth_token") if not get(n)]
        if missing:
            raise ValueError(f"Twilio is not configured: {', '.join(missing)} not set")
        timeout = get("timeout")
        return cls(
            account_sid=get("account_sid") or "",
            auth_token=get("auth_token") or "",
            from_number=get("from_number"),
            messaging_service_sid=get("messaging_service_sid"),
            public_url=get("public_url"),
            base_url=get("base_url"),
            region=get("region"),
            edge=get("edge"),
            timeout=float(timeout) if timeout else 10.0,
        )

    def status_callback_url(self) -> str | None:
        if not self.public_url:
            return None
        return self.public_url.rstrip("/") + STATUS_CALLBACK_PATH


# ---------------------------------------------------------------------------------------
# The channel


_TWILIO_TO_SEND: Mapping[str, SendStatus] = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "sent",
    "read": "sent",
    "partially_delivered": "sent",
    "failed": "failed",
    "undelivered": "failed",
    "canceled": "failed",
}


class TwilioSmsChannel:
    """SMS via Twilio. ``send`` is synchronous and thread-safe; see the module docstring."""

    def __init__(
        self,
        config: TwilioConfig,
        *,
        sent_log: SentLog | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        lookup_limit: int = 20,
        lookup_skew: float = 120.0,
        name: str = "twilio",
    ) -> None:
        self.config = config
        self._name = name
        self._log: SentLog = sent_log if sent_log is not None else MemorySentLog()
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._lookup_limit = lookup_limit
        self._lookup_skew = lookup_skew
        install_mask_filter(http_log)
        install_mask_filter(logging.getLogger("urllib3.connectionpool"))
        self._http = HttpClient(config.timeout, config.base_url, http_log)
        self.client: Any = Client(
            config.account_sid,
            config.auth_token,
            region=config.region,
            edge=config.edge,
            http_client=self._http,
            environment=_ISOLATED_ENV,
        )
        self._locks = [threading.Lock() for _ in range(64)]

    @property
    def name(self) -> str:
        return self._name

    @property
    def sent_log(self) -> SentLog:
        return self._log

    # -- send ---------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        lock = self._locks[zlib.crc32(message.key.encode()) % len(self._locks)]
        with lock:
            return self._send(message)

    def _send(self, message: OutboundMessage) -> SendResult:
        prior = self._log.get(message.key)
        if prior is not None:
            log.info(
                "twilio: %s to %s already %s (%s); not sent again",
                message.key,
                message.masked_to,
                prior.status,
                prior.provider_id or prior.error_code,
            )
            return replace(prior, replayed=True)
        pending = self._log.begin(message.key, self._clock())
        check_first = pending.resumed  # an earlier run may have reached Twilio
        if check_first:
            log.info(
                "twilio: %s to %s was started before (%d attempt(s)); looking for it first",
                message.key,
                message.masked_to,
                pending.attempts,
            )
        last: ChannelError | None = None
        attempts = pending.attempts
        for step in range(1, self._retry.max_attempts + 1):
            if step > 1:
                assert last is not None
                if last.retry_after is not None and last.retry_after > self._retry.max_retry_after:
                    break  # the caller redelivers later; do not hold a thread that long
                wait = self._retry.delay(step - 1, last.retry_after, self._rand())
                log.info(
                    "twilio: %s to %s: retry %d in %.2fs after %s",
                    message.key,
                    message.masked_to,
                    step,
                    wait,
                    last.message,
                )
                self._sleep(wait)
            if check_first:
                try:
                    found = self._find_earlier(message, pending.started_at)
                except ChannelError as exc:
                    last = exc
                    log.warning(
                        "twilio: %s to %s: could not look for an earlier attempt: %s",
                        message.key,
                        message.masked_to,
                        exc.message,
                    )
                    continue  # never create while we cannot tell whether it exists
                check_first = False
                if found is not None:
                    result = self._result(message, found, max(1, attempts))
                    log.info(
                        "twilio: %s to %s: found the earlier attempt %s (%s); not sent again",
                        message.key,
                        message.masked_to,
                        result.provider_id,
                        found.status,
                    )
                    self._log.record(result)
                    return result
            attempts = self._log.note_attempt(message.key)
            try:
                created = self._create(message)
            except Exception as exc:
                failure = self._classify(exc, attempts)
                if failure is None:
                    raise
                last = failure.error
                if last.permanent:
                    result = SendResult(
                        key=message.key,
                        status="failed",
                        error_code=last.code,
                        error_message=last.message,
                        attempts=attempts,
                        channel=self._name,
                    )
                    log.warning(
                        "twilio: %s to %s refused: %s", message.key, message.masked_to, last.message
                    )
                    self._log.record(result)
                    return result
                check_first = failure.ambiguous
                log.warning(
                    "twilio: %s to %s: attempt %d failed: %s%s",
                    message.key,
                    message.masked_to,
                    attempts,
                    last.message,
                    " (may have reached Twilio; will look before resending)"
                    if failure.ambiguous
                    else "",
                )
                continue
            result = self._result(message, created, attempts)
            self._log.record(result)
            log.info(
                "twilio: %s to %s: %s %s (attempt %d)",
                message.key,
                message.masked_to,
                result.provider_id,
                created.status,
                attempts,
            )
            return result
        assert last is not None
        log.error(
            "twilio: %s to %s: giving up for now: %s", message.key, message.masked_to, last.message
        )
        raise TransientChannelError(
            f"{message.key}: not sent to {message.masked_to} yet: {last.message}",
            code=last.code,
            status=last.status,
            retry_after=last.retry_after,
            attempts=attempts,
        )

    def _create(self, message: OutboundMessage) -> Any:
        kwargs: dict[str, Any] = {"to": message.to, "body": message.text}
        if self.config.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.config.messaging_service_sid
        if self.config.from_number:
            kwargs["from_"] = self.config.from_number
        callback = message.status_callback_url or self.config.status_callback_url()
        if callback:
            kwargs["status_callback"] = callback
        return self.client.messages.create(**kwargs)

    def _find_earlier(self, message: OutboundMessage, since: float) -> Any | None:
        """The message Twilio already has for this key, if any (see the module docstring)."""
        kwargs: dict[str, Any] = {
            "to": message.to,
            "limit": self._lookup_limit,
            "page_size": self._lookup_limit,
        }
        if self.config.from_number:
            kwargs["from_"] = self.config.from_number
        try:
            candidates = self.client.messages.list(**kwargs)
        except Exception as exc:
            failure = self._classify(exc, 0)
            if failure is None:
                raise
            raise TransientChannelError(
                f"looking up earlier messages: {failure.error.message}",
                code=failure.error.code,
                status=failure.error.status,
                retry_after=failure.error.retry_after,
            ) from exc
        for candidate in candidates:
            if candidate.body != message.text:
                continue
            direction = getattr(candidate, "direction", None)
            if direction and not str(direction).startswith("outbound"):
                continue
            created = candidate.date_created
            if isinstance(created, datetime) and (created.timestamp() < since - self._lookup_skew):
                continue
            owner = self._log.key_for(candidate.sid)
            if owner is not None and owner != message.key:
                continue
            return candidate
        return None

    def _result(self, message: OutboundMessage, instance: Any, attempts: int) -> SendResult:
        twilio_status = str(instance.status or "queued")
        status = _TWILIO_TO_SEND.get(twilio_status, "queued")
        code = int_or_none(getattr(instance, "error_code", None))
        return SendResult(
            key=message.key,
            status=status,
            provider_id=instance.sid,
            error_code=code,
            error_message=describe_error(code, getattr(instance, "error_message", None))
            if code
            else None,
            attempts=attempts,
            channel=self._name,
        )

    def _classify(self, exc: BaseException, attempts: int) -> Failure | None:
        """A send error as permanent/transient and ambiguous/not; None: not ours (re-raise)."""
        return classify_failure(
            exc,
            attempts,
            now=self._clock(),
            headers=self._http.last_headers(),
            timeout=self.config.timeout,
        )


# ---------------------------------------------------------------------------------------
# Inbound status callbacks


class StatusCallback(NamedTuple):
    provider_id: str  # MessageSid, "SM…"
    status: str  # queued, sent, delivered, undelivered, failed, …
    error_code: int | None


def verify_webhook(
    auth_token: str,
    url: str,
    params: Mapping[str, str],
    signature: str | None,
    *,
    signature_settings: str | None = None,
) -> bool:
    """True when ``signature`` (the ``X-Twilio-Signature`` header) is Twilio's signature of
    the POST to ``url`` (the full URL Twilio requested: scheme, host, path and query exactly
    as configured in ``StatusCallback`` or in the number's incoming-message webhook) with form
    ``params``.

    ``signature_settings`` is the ``X-Twilio-Webhooks-Signature-Settings`` header, if any
    (newer accounts can sign with HMAC-SHA256 and a shared key: pass that key as
    ``auth_token`` then)."""
    if not signature:
        return False
    algorithm: str | None = None
    for part in (signature_settings or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            algorithm = value.strip()
    validator = RequestValidator(auth_token)
    try:
        if algorithm is None:
            return bool(validator.validate(url, params, signature))
        return bool(validator.validate(url, params, signature, algorithm=algorithm))
    except TypeError:  # an SDK without the algorithm parameter
        log.warning(
            "twilio: callback signed with %s, which this twilio SDK cannot check", algorithm
        )
        return False


#: Any Twilio webhook (status callbacks, incoming messages) is signed the same way.
verify_status_callback = verify_webhook


def parse_status_callback(params: Mapping[str, str]) -> StatusCallback:
    """``(MessageSid, MessageStatus, ErrorCode)`` of a status callback's form fields.

    Raises ValueError for a form without a SID or a status."""
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not sid:
        raise ValueError("status callback without MessageSid")
    if not status:
        raise ValueError(f"status callback for {sid} without MessageStatus")
    return StatusCallback(sid, status, int_or_none(params.get("ErrorCode")))


def describe_callback(update: StatusCallback) -> str:
    """One log-safe line for a status callback."""
    if update.error_code:
        return f"{update.provider_id} {update.status}: {describe_error(update.error_code)}"
    return f"{update.provider_id} {update.status}"


# ---------------------------------------------------------------------------------------
# Inbound messages (replies to the Twilio number)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An SMS to the Twilio number; ``repr`` shows no number and no text."""

    sid: str  # MessageSid, "SM…" (empty if Twilio sent none)
    from_number: str = field(repr=False)  # E.164 as Twilio gives it; log mask_phone of it
    to_number: str = field(repr=False)
    body: str = field(repr=False)


def parse_inbound_message(params: Mapping[str, str]) -> InboundMessage:
    """``(MessageSid, From, To, Body)`` of Twilio's incoming-message webhook.

    Raises ValueError for a form without ``From``."""
    sender = (params.get("From") or "").strip()
    if not sender:
        raise ValueError("incoming message without From")
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    return InboundMessage(sid, sender, (params.get("To") or "").strip(), params.get("Body") or "")
