"""SMS through Twilio's Messages API, with the real ``twilio`` SDK (9.x).

``TwilioSmsChannel(config).send(message)`` creates one Message
(``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: ``To``, ``Body``, ``From`` or
``MessagingServiceSid``, ``StatusCallback``) and returns a :class:`SendResult` with the ``SM…``
SID. What it adds to the SDK:

* **Retries** with exponential backoff (bounded attempts, injectable ``sleep``) on HTTP 429,
  5xx, timeouts and connection errors; ``Retry-After`` is honoured. 4xx answers other than
  429 are permanent: a ``failed`` result with the error translated (:func:`describe_error`).
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
  reply means is :mod:`streams.channels.replies`.

Pointing the SDK elsewhere (tests, an egress proxy): ``base_url`` replaces scheme and host of
every ``*.twilio.com`` URL in the HTTP client, *after* the SDK's region/edge rewriting, so it
works with any region setting. (``client.api.base_url = …`` also works, but the SDK's
region/edge logic would then mangle an IP-address host.)
"""

from __future__ import annotations

import email.utils
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
from urllib.parse import urlsplit, urlunsplit

import requests.exceptions
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from streams.channels.base import (
    ChannelError,
    MemorySentLog,
    OutboundMessage,
    PermanentChannelError,
    SendResult,
    SendStatus,
    SentLog,
    TransientChannelError,
    install_mask_filter,
    mask_numbers,
)

try:  # twilio >= 9.? has RFC-9457 errors as a separate class (not a TwilioRestException)
    from twilio.base.exceptions import TwilioServiceException
except ImportError:  # pragma: no cover - older 9.x
    TwilioServiceException = TwilioRestException

__all__ = [
    "ENV",
    "INBOUND_PATH",
    "STATUS_CALLBACK_PATH",
    "InboundMessage",
    "RetryPolicy",
    "StatusCallback",
    "TwilioConfig",
    "TwilioSmsChannel",
    "describe_error",
    "is_transient_code",
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
# Vendor errors in words


#: Twilio error codes → what they mean for us. https://www.twilio.com/docs/api/errors/<code>
ERRORS: Mapping[int, str] = {
    # account and configuration
    20003: "authentication failed: check GOVCLOCK_TWILIO_ACCOUNT_SID and _AUTH_TOKEN",
    20404: "resource not found: check the account SID (and the messaging service SID)",
    20429: "too many requests: Twilio is rate-limiting this account",
    21606: "the From number is not an SMS-capable Twilio number of this account",
    21659: "the From number is not a Twilio phone number of this account",
    21660: "the From number does not belong to this account",
    21611: "the From number has too many queued messages; try again later",
    21408: "SMS to this region is not enabled: turn on the geographic permission "
    "(Messaging → Settings → Geo permissions) for China",
    21612: "Twilio cannot route a message from this sender to this number",
    21608: "trial account: the recipient is not a verified number",
    # recipient
    21211: "invalid recipient number (not a valid phone number)",
    21214: "the recipient number cannot be reached (not a valid mobile number)",
    21614: "the recipient number is not a mobile number",
    21610: "the recipient has unsubscribed (replied STOP) from this sender",
    21604: "the recipient number ('To') is missing",
    # message
    21602: "the message body is empty",
    21617: "the message body is longer than 1600 characters",
    21603: "neither a From number nor a messaging service is configured",
    # delivery (status callbacks)
    30001: "queue overflow: too many messages queued for this sender",
    30002: "the Twilio account is suspended",
    30003: "unreachable handset: the phone is off or out of coverage",
    30004: "message blocked by the recipient or the carrier",
    30005: "unknown handset: the number does not exist on the carrier",
    30006: "landline or unreachable carrier",
    30007: "filtered by the carrier as spam or unregistered content "
    "(in China: the template must be whitelisted)",
    30008: "unknown delivery error from the carrier",
    30032: "toll-free number not verified",
    30034: "US A2P 10DLC sender not registered",
}

#: Codes that mean "later", not "never" (besides HTTP 429 and 5xx).
TRANSIENT_CODES = frozenset({20429, 21611, 30001})


def describe_error(code: int | None, vendor_message: str | None = None) -> str:
    """A Twilio error code in words, ending in ``[Twilio <code>]``; numbers masked."""
    if code is not None and code in ERRORS:
        return f"{ERRORS[code]} [Twilio {code}]"
    what = mask_numbers(vendor_message).strip() if vendor_message else "unknown error"
    return f"{what} [Twilio {code}]" if code is not None else what


def is_transient_code(code: int | None) -> bool:
    return code in TRANSIENT_CODES


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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt ``n`` (1-based) failed transiently → wait
    ``min(max_delay, base_delay * factor ** (n - 1))`` (plus up to ``jitter`` of it), or the
    provider's ``Retry-After`` if longer; a ``Retry-After`` above ``max_retry_after`` ends the
    retries (the caller redelivers later)."""

    max_attempts: int = 4
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    jitter: float = 0.2

    def delay(self, attempt: int, retry_after: float | None, rand: float = 0.0) -> float:
        backoff = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        backoff *= 1.0 + self.jitter * rand
        return max(backoff, retry_after or 0.0)


# ---------------------------------------------------------------------------------------
# The HTTP client handed to the SDK


class _HttpClient:
    """The SDK's ``TwilioHttpClient`` behind a thin wrapper that (a) sends ``*.twilio.com``
    requests to ``base_url`` if one is set and (b) keeps the last response's headers per
    thread, because ``TwilioRestException`` drops them (``Retry-After``)."""

    is_async = False

    def __init__(self, timeout: float, base_url: str | None, logger: logging.Logger) -> None:
        self.timeout = timeout
        self.logger = logger
        self._inner: Any = TwilioHttpClient(timeout=timeout, logger=logger)
        self._base = urlsplit(base_url.rstrip("/")) if base_url else None
        self._local = threading.local()

    def _rewrite(self, url: str) -> str:
        if self._base is None:
            return url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        path = self._base.path + parts.path
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        self._local.headers = {}
        response = self._inner.request(
            method,
            self._rewrite(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self._local.headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        return response

    def last_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = getattr(self._local, "headers", {})
        return headers


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


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


@dataclass(frozen=True, slots=True)
class _Failure:
    error: ChannelError
    ambiguous: bool  # the request may have reached Twilio and created the message


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
        self._http = _HttpClient(config.timeout, config.base_url, http_log)
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
        code = _int_or_none(getattr(instance, "error_code", None))
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

    def _classify(self, exc: BaseException, attempts: int) -> _Failure | None:
        """A send error as permanent/transient and ambiguous/not; None: not ours (re-raise)."""
        now = self._clock()
        if isinstance(exc, TwilioRestException | TwilioServiceException):
            status = int(exc.status)
            code = _int_or_none(exc.code)
            if code == status:  # the SDK falls back to the HTTP status when the body has none
                code = None
            if isinstance(exc, TwilioServiceException) and not isinstance(exc, TwilioRestException):
                vendor = " - ".join(str(p) for p in (exc.title, exc.detail) if p)
            else:
                vendor = str(exc.msg)
            retry_after = _retry_after(self._http.last_headers().get("retry-after"), now)
            if status == 429 or is_transient_code(code):
                text = describe_error(code or 20429, vendor)
                return _Failure(
                    TransientChannelError(
                        text, code=code, status=status, retry_after=retry_after, attempts=attempts
                    ),
                    ambiguous=False,
                )
            if status >= 500 or status == 408:
                text = f"Twilio server error (HTTP {status})"
                if code is not None:
                    text = f"{text}: {describe_error(code, vendor)}"
                return _Failure(
                    TransientChannelError(
                        text, code=code, status=status, retry_after=retry_after, attempts=attempts
                    ),
                    ambiguous=True,
                )
            return _Failure(
                PermanentChannelError(
                    describe_error(code, vendor) if code else f"HTTP {status}: {vendor}",
                    code=code,
                    status=status,
                    attempts=attempts,
                ),
                ambiguous=False,
            )
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _Failure(
                TransientChannelError(
                    f"timed out connecting to Twilio ({self.config.timeout:g}s)", attempts=attempts
                ),
                ambiguous=False,
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return _Failure(
                TransientChannelError(
                    f"no answer from Twilio within {self.config.timeout:g}s", attempts=attempts
                ),
                ambiguous=True,
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            refused = _never_connected(exc)
            return _Failure(
                TransientChannelError(
                    "cannot connect to Twilio" if refused else "connection to Twilio dropped",
                    attempts=attempts,
                ),
                ambiguous=not refused,
            )
        if isinstance(exc, requests.exceptions.RequestException | TwilioException):
            # e.g. "Unable to fetch page" (a list that got a non-200 answer)
            http_status = _status_of(exc)
            return _Failure(
                TransientChannelError(
                    f"Twilio request failed: {type(exc).__name__}"
                    + (f" (HTTP {http_status})" if http_status else ""),
                    status=http_status,
                    attempts=attempts,
                ),
                ambiguous=True,
            )
        return None


def _never_connected(exc: BaseException) -> bool:
    """True when the chain says the TCP connection was never made (the request did not leave)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectionRefusedError) or type(item).__name__ in (
            "NewConnectionError",
            "NameResolutionError",
        ):
            return True
        stack.extend([item.__cause__, item.__context__])
        stack.extend(a for a in item.args if isinstance(a, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return False


def _status_of(exc: BaseException) -> int | None:
    for arg in exc.args:
        status = getattr(arg, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _int_or_none(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


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
    return StatusCallback(sid, status, _int_or_none(params.get("ErrorCode")))


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
