"""The HTTP side of the Twilio channel: what goes over the wire, and what a failure means.

* :class:`HttpClient` is the HTTP client handed to the SDK: it sends ``*.twilio.com``
  requests to ``base_url`` if one is set, and keeps the last response's headers per thread
  (``TwilioRestException`` drops them, ``Retry-After`` included).
* :func:`classify_failure` sorts an exception from a request into permanent or transient, and
  *ambiguous* (the request may have reached Twilio and created the message) or not; the
  channel looks before resending after an ambiguous one.
* :class:`RetryPolicy` says how long to wait before the next attempt.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests.exceptions
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient

from channels.base import ChannelError, PermanentChannelError, TransientChannelError
from channels.twilio_errors import describe_error, int_or_none, is_transient_code

try:  # twilio >= 9.? has RFC-9457 errors as a separate class (not a TwilioRestException)
    from twilio.base.exceptions import TwilioServiceException
except ImportError:  # pragma: no cover - older 9.x
    TwilioServiceException = TwilioRestException

__all__ = [
    "Failure",
    "HttpClient",
    "RetryPolicy",
    "classify_failure",
]


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


class HttpClient:
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


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed request: the error to raise or record, and whether it may have sent."""

    error: ChannelError
    ambiguous: bool  # the request may have reached Twilio and created the message


def classify_failure(
    exc: BaseException,
    attempts: int,
    *,
    now: float,
    headers: Mapping[str, str],
    timeout: float,
) -> Failure | None:
    """A send error as permanent/transient and ambiguous/not; None: not ours (re-raise).

    ``headers`` are those of the response that failed (``Retry-After``), ``now`` the time
    to count an HTTP-date ``Retry-After`` from, ``timeout`` the client's, for the message."""
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        status = int(exc.status)
        code = int_or_none(exc.code)
        if code == status:  # the SDK falls back to the HTTP status when the body has none
            code = None
        if isinstance(exc, TwilioServiceException) and not isinstance(exc, TwilioRestException):
            vendor = " - ".join(str(p) for p in (exc.title, exc.detail) if p)
        else:
            vendor = str(exc.msg)
        retry_after = _retry_after(headers.get("retry-after"), now)
        if status == 429 or is_transient_code(code):
            text = describe_error(code or 20429, vendor)
            return Failure(
                TransientChannelError(
                    text, code=code, status=status, retry_after=retry_after, attempts=attempts
                ),
                ambiguous=False,
            )
        if status >= 500 or status == 408:
            text = f"Twilio server error (HTTP {status})"
            if code is not None:
                text = f"{text}: {describe_error(code, vendor)}"
            return Failure(
                TransientChannelError(
                    text, code=code, status=status, retry_after=retry_after, attempts=attempts
                ),
                ambiguous=True,
            )
        return Failure(
            PermanentChannelError(
                describe_error(code, vendor) if code else f"HTTP {status}: {vendor}",
                code=code,
                status=status,
                attempts=attempts,
            ),
            ambiguous=False,
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Failure(
            TransientChannelError(
                f"timed out connecting to Twilio ({timeout:g}s)", attempts=attempts
            ),
            ambiguous=False,
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return Failure(
            TransientChannelError(f"no answer from Twilio within {timeout:g}s", attempts=attempts),
            ambiguous=True,
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        refused = _never_connected(exc)
        return Failure(
            TransientChannelError(
                "cannot connect to Twilio" if refused else "connection to Twilio dropped",
                attempts=attempts,
            ),
            ambiguous=not refused,
        )
    if isinstance(exc, requests.exceptions.RequestException | TwilioException):
        # e.g. "Unable to fetch page" (a list that got a non-200 answer)
        http_status = _status_of(exc)
        return Failure(
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
