"""The channel interface: one outbound message in, one :class:`SendResult` out.

A channel is anything with a ``name`` and a synchronous ``send`` (the notifier runs it in a
thread)::

    result = channel.send(OutboundMessage(key=notify.key, to=notify.phone,
                                          text=notify.render(ack_url),
                                          status_callback_url=callback_url))

Outcomes of ``send``:

* a :class:`SendResult` with ``status`` ``queued`` or ``sent``: the provider took the message
  (``provider_id`` is its id, e.g. a Twilio ``SM…`` SID); the delivery report comes later;
* a :class:`SendResult` with ``status`` ``failed``: the provider refused it for good (bad number,
  unsubscribed, …); ``error_code``/``error_message`` say why in words. Feed it to
  ``on_delivery(state, key, "failed", now)`` to fall back at once;
* :class:`TransientChannelError`: the provider could not be reached or kept saying "later"
  within the retry budget. Nothing final is known; redeliver the same key later (the send is
  idempotent by key, so a redelivery never double-sends a message the provider took).

Every final result is written to a :class:`SentLog` (key → result) *before* ``send`` returns,
and ``send`` consults it first: a redelivered key returns the earlier result, marked
``replayed``, without calling the provider. :class:`SqliteSentLog` survives restarts.

Nothing here logs a phone number: :class:`OutboundMessage` hides ``to`` from its repr and
:func:`mask_numbers` scrubs free text (vendor error messages, URLs) before it is logged.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from deadlines.roster import PHONE_PATTERN, mask_phone

__all__ = [
    "Channel",
    "ChannelError",
    "MaskNumbersFilter",
    "MemorySentLog",
    "OutboundMessage",
    "Pending",
    "PermanentChannelError",
    "SendResult",
    "SendStatus",
    "SentLog",
    "SqliteSentLog",
    "TransientChannelError",
    "mask_numbers",
]

SendStatus = Literal["queued", "sent", "failed"]
SEND_STATUSES: tuple[str, ...] = ("queued", "sent", "failed")

_E164 = re.compile(PHONE_PATTERN)


# ---------------------------------------------------------------------------------------
# Masking free text


# "+8613800138000", "%2B8613800138000" (URL-encoded), and bare Chinese mobile numbers
# ("13800138000", "8613800138000") not glued to other word characters (so SIDs, hex and
# epoch milliseconds are left alone).
_NUMBER_IN_TEXT = re.compile(
    r"(?P<plus>\+|%2[Bb])(?P<e164>[1-9]\d{5,14})(?!\d)"
    r"|(?<![\w%+])(?P<bare>(?:86)?1[3-9]\d{9})(?![\w])"
)


def _mask_match(m: re.Match[str]) -> str:
    if m.group("e164") is not None:
        return m.group("plus") + mask_phone("+" + m.group("e164"))[1:]
    return mask_phone("+" + m.group("bare"))[1:]


def mask_numbers(text: str) -> str:
    """``text`` with every phone number in it masked the way :func:`mask_phone` does."""
    return _NUMBER_IN_TEXT.sub(_mask_match, text)


class MaskNumbersFilter(logging.Filter):
    """A logging filter that masks phone numbers in the formatted message of each record.

    Attach it to a logger (not a handler) that may see numbers it does not own, e.g. the
    Twilio SDK's HTTP logger (which logs query parameters such as ``To``) or urllib3's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        masked = mask_numbers(message)
        if masked != message:
            record.msg = masked
            # no arguments left: the message is final. An empty tuple, not None: some
            # formatters (mode's, in the worker) wrap None into (None,) and %-format the
            # message again, which fails on a masked URL's "%2B86…"
            record.args = ()
        return True


def install_mask_filter(logger: logging.Logger) -> None:
    """Attach one :class:`MaskNumbersFilter` to ``logger`` (idempotent)."""
    if not any(isinstance(f, MaskNumbersFilter) for f in logger.filters):
        logger.addFilter(MaskNumbersFilter())


# ---------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to one number. ``key`` is the idempotency key (e.g. ``Notify.key``)."""

    key: str
    to: str = field(repr=False)  # E.164; log ``masked_to``
    text: str
    status_callback_url: str | None = None

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("an outbound message needs a key (the idempotency key)")
        if not _E164.match(self.to):
            raise ValueError(
                f"{self.key}: recipient {mask_phone(self.to)} is not an E.164 number (+86…)"
            )
        if not self.text:
            raise ValueError(f"{self.key}: empty text")

    @property
    def masked_to(self) -> str:
        return mask_phone(self.to)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one :class:`OutboundMessage`."""

    key: str
    status: SendStatus
    provider_id: str | None = None  # e.g. the Twilio message SID, "SM…"
    error_code: int | None = None  # the provider's code (Twilio: 21211, 30003, …)
    error_message: str | None = None  # translated, human-readable, numbers masked
    attempts: int = 0  # provider calls that tried to create the message, over all deliveries
    channel: str = ""
    replayed: bool = False  # True: answered from the SentLog, the provider was not called

    def __post_init__(self) -> None:
        if self.status not in SEND_STATUSES:
            raise ValueError(f"{self.key}: unknown send status {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status != "failed"


class ChannelError(Exception):
    """A send that did not succeed. ``permanent``: retrying the same message cannot help."""

    permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(mask_numbers(message))
        self.message = mask_numbers(message)
        self.code = code  # provider error code, if any
        self.status = status  # HTTP status, if any
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it did
        self.attempts = attempts


class PermanentChannelError(ChannelError):
    """The provider refused this message for good (bad number 21211, unsubscribed 21610, …)."""

    permanent = True


class TransientChannelError(ChannelError):
    """Rate-limited, provider error (5xx), timeout, connection trouble: worth retrying later."""

    permanent = False


@runtime_checkable
class Channel(Protocol):
    """Something that sends :class:`OutboundMessage` values (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def send(self, message: OutboundMessage) -> SendResult: ...


# ---------------------------------------------------------------------------------------
# The idempotency store


@dataclass(frozen=True, slots=True)
class Pending:
    """A send that was started: ``resumed`` is True when an earlier run had started it too
    (it may have reached the provider before crashing or timing out)."""

    key: str
    started_at: float
    attempts: int
    resumed: bool


class SentLog(Protocol):
    """Idempotency store: message key → final :class:`SendResult` (and provider id → key).

    A key goes ``begin`` (pending) → ``note_attempt``… → ``record`` (final). Only ``record``ed
    results are returned by ``get``; a pending key tells the next run to look for an earlier
    attempt at the provider before sending again. No phone number is stored.
    """

    def get(self, key: str) -> SendResult | None: ...

    def begin(self, key: str, now: float) -> Pending: ...

    def note_attempt(self, key: str) -> int: ...

    def record(self, result: SendResult) -> None: ...

    def key_for(self, provider_id: str) -> str | None: ...

    def close(self) -> None: ...


@dataclass
class _Row:
    started_at: float
    attempts: int = 0
    result: SendResult | None = None


class MemorySentLog:
    """A :class:`SentLog` in memory (tests, ``make run``); thread-safe."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._by_provider: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> SendResult | None:
        with self._lock:
            row = self._rows.get(key)
            return None if row is None else row.result

    def begin(self, key: str, now: float) -> Pending:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                return Pending(key, row.started_at, row.attempts, resumed=True)
            self._rows[key] = _Row(started_at=now)
            return Pending(key, now, 0, resumed=False)

    def note_attempt(self, key: str) -> int:
        with self._lock:
            row = self._rows.setdefault(key, _Row(started_at=time.time()))
            row.attempts += 1
            return row.attempts

    def record(self, result: SendResult) -> None:
        with self._lock:
            row = self._rows.setdefault(result.key, _Row(started_at=time.time()))
            row.result = replace(result, replayed=False)
            row.attempts = max(row.attempts, result.attempts)
            if result.provider_id:
                self._by_provider[result.provider_id] = result.key

    def key_for(self, provider_id: str) -> str | None:
        with self._lock:
            return self._by_provider.get(provider_id)

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for r in self._rows.values() if r.result is not None)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    key           TEXT PRIMARY KEY,
    channel       TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,             -- 'pending' until recorded
    provider_id   TEXT,
    error_code    INTEGER,
    error_message TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    started_at    REAL NOT NULL,
    finished_at   REAL
);
CREATE INDEX IF NOT EXISTS sent_by_provider ON sent (provider_id);
"""


class SqliteSentLog:
    """A :class:`SentLog` in a SQLite file: redeliveries after a restart are not re-sent.

    One connection guarded by a lock (the notifier's threads share it); WAL journal, every
    write committed before the call returns.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> SendResult | None:
        with self._lock:
            row = self._db.execute(
                "SELECT channel, status, provider_id, error_code, error_message, attempts "
                "FROM sent WHERE key = ? AND status != 'pending'",
                (key,),
            ).fetchone()
        if row is None:
            return None
        channel, status, provider_id, error_code, error_message, attempts = row
        return SendResult(
            key=key,
            status=status,
            provider_id=provider_id,
            error_code=error_code,
            error_message=error_message,
            attempts=attempts,
            channel=channel,
        )

    def begin(self, key: str, now: float) -> Pending:
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO sent (key, status, started_at) VALUES (?, 'pending', ?)",
                (key, now),
            )
            if cur.rowcount == 1:
                return Pending(key, now, 0, resumed=False)
            started_at, attempts = self._db.execute(
                "SELECT started_at, attempts FROM sent WHERE key = ?", (key,)
            ).fetchone()
            return Pending(key, started_at, attempts, resumed=True)

    def note_attempt(self, key: str) -> int:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO sent (key, status, started_at) VALUES (?, 'pending', ?)",
                (key, time.time()),
            )
            self._db.execute("UPDATE sent SET attempts = attempts + 1 WHERE key = ?", (key,))
            (attempts,) = self._db.execute(
                "SELECT attempts FROM sent WHERE key = ?", (key,)
            ).fetchone()
            return int(attempts)

    def record(self, result: SendResult) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO sent (key, channel, status, provider_id, error_code, error_message,"
                " attempts, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET channel = excluded.channel,"
                " status = excluded.status, provider_id = excluded.provider_id,"
                " error_code = excluded.error_code, error_message = excluded.error_message,"
                " attempts = max(sent.attempts, excluded.attempts),"
                " finished_at = excluded.finished_at",
                (
                    result.key,
                    result.channel,
                    result.status,
                    result.provider_id,
                    result.error_code,
                    result.error_message,
                    result.attempts,
                    now,
                    now,
                ),
            )

    def key_for(self, provider_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key FROM sent WHERE provider_id = ? LIMIT 1", (provider_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def prune(self, finished_before: float) -> int:
        """Forget final results recorded before ``finished_before`` (epoch seconds); pending
        rows are kept. Keep at least as long as a message can be redelivered."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM sent WHERE status != 'pending' AND finished_at < ?",
                (finished_before,),
            )
            return int(cur.rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteSentLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
