"""Twilio's error codes in words, and which of them mean "later" rather than "never".

:func:`describe_error` turns the ``ErrorCode`` of an API error or a status callback into a
log-safe sentence (phone numbers masked) ending in ``[Twilio <code>]``;
:func:`is_transient_code` tells the channel's retry logic which codes are worth retrying;
:func:`int_or_none` reads an error code the way Twilio hands it over (int, digits, empty).
"""

from __future__ import annotations

from collections.abc import Mapping

from channels.base import mask_numbers

__all__ = [
    "ERRORS",
    "TRANSIENT_CODES",
    "describe_error",
    "int_or_none",
    "is_transient_code",
]


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


def int_or_none(value: object) -> int | None:
    """An error code (or any integer) as Twilio gives it: int, digits, ``""`` or None."""
    if value is None or value == "":
        return None
    try:
        return int(str(value))
    except ValueError:
        return None
